# Admin of access requests (issue 4).
