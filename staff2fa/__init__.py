"""Second factor of the staff on /admin/ (django-otp): TOTP enrolled on first login, one-time recovery codes."""
