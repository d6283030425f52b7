"""The privilege catalogue and the endpoints of the reference document, with the privilege(s) granting each.

Source of the seed data migration and of the availability endpoint allow-list. A change here needs a new migration.
"""

# code -> French label
PRIVILEGES: dict[str, str] = {
    "entreprises": "Entreprises (INSEE)",
    "etablissements": "Établissements (INSEE)",
    "extraits_rcs_infogreffe": "Extrait RCS (Infogreffe)",
    "associations": "Informations déclaratives d'une association",
    "documents_associations": "Divers documents d'une association",
    "actes_bilans_inpi": "Actes et bilans annuels (INPI)",
    "conventions_collectives": "Conventions collectives",
    "exercices": "Chiffre d'affaires (DGFIP)",
    "bilans_entreprises_bdf": "3 derniers bilans annuels (Banque de France)",
    "liasses_fiscales_dgfip": "Déclarations de résultat (DGFIP)",
    "attestations_fiscales_dgfip": "Attestation fiscale (DGFIP)",
    "attestations_sociales_acoss": "Attestation de vigilance (URSSAF)",
    "attestations_agefiph": "Conformité emploi des travailleurs handicapés (AGEFIPH)",
    "cotisations_msa": "Cotisations de sécurité sociale agricole (MSA)",
    "probtp": "Cotisations retraite du bâtiment (PRO BTP)",
    "fntp_carte_pro": "Carte professionnelle travaux publics (FNTP)",
    "certificats_cnetp": "Cotisations congés payés & chômage intempéries (CNETP)",
    "certificats_rge_ademe": "Certification RGE (ADEME)",
    "qualibat": "Certificat de qualification bâtiment (Qualibat)",
    "certificats_opqibi": "Certification de qualification d'ingénierie (OPQIBI)",
    "extraits_courts_inpi": "Brevets, modèles et marques déposés (INPI)",
    "effectifs_acoss_covid": "Effectifs mensuels et annuels (URSSAF, aides COVID-19)",
}

# endpoint path -> (French label, privilege codes granting it). The 25 distinct values of the reference list.
ENDPOINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "api/v3/entreprises_restored": ("Entreprises", ("entreprises",)),
    "api/v3/etablissements_restored": ("Établissements", ("etablissements",)),
    "api/v2/extraits_rcs_infogreffe": ("Extrait RCS", ("extraits_rcs_infogreffe",)),
    "api/v2/associations": ("Informations déclaratives d'une association", ("associations",)),
    "api/v2/documents_associations": ("Divers documents d'une association", ("documents_associations",)),
    "api/v2/documents_inpi": ("Actes et bilans annuels INPI", ("actes_bilans_inpi",)),
    "api/v2/conventions_collectives": ("Conventions collectives", ("conventions_collectives",)),
    "api/v2/exercices": ("Chiffre d'affaires", ("exercices",)),
    "api/v2/bilans_entreprises_bdf": ("3 derniers bilans annuels", ("bilans_entreprises_bdf",)),
    "api/v2/liasses_fiscales_dgfip": ("Déclarations de résultat", ("liasses_fiscales_dgfip",)),
    "api/v2/attestations_fiscales_dgfip": ("Attestation fiscale", ("attestations_fiscales_dgfip",)),
    "api/v2/attestations_sociales_acoss": ("Attestation de vigilance", ("attestations_sociales_acoss",)),
    "api/v2/attestations_agefiph": (
        "Conformité emploi des travailleurs handicapés",
        ("attestations_agefiph",),
    ),
    "api/v2/cotisations_msa": ("Cotisations de sécurité sociale agricole", ("cotisations_msa",)),
    "api/v2/attestations_cotisation_retraite_probtp": (
        "Attestation de cotisations retraite du bâtiment",
        ("probtp",),
    ),
    "api/v2/eligibilites_cotisation_retraite_probtp": (
        "Éligibilité aux cotisations retraite du bâtiment",
        ("probtp",),
    ),
    "api/v2/cartes_professionnelles_fntp": ("Carte professionnelle travaux publics", ("fntp_carte_pro",)),
    "api/v2/certificats_cnetp": ("Cotisations congés payés & chômage intempéries", ("certificats_cnetp",)),
    "api/v2/certificats_rge_ademe": ("Certification RGE", ("certificats_rge_ademe",)),
    "api/v2/certificats_qualibat": ("Certificat de qualification bâtiment", ("qualibat",)),
    "api/v2/certificats_opqibi": ("Certification de qualification d'ingénierie", ("certificats_opqibi",)),
    "api/v2/extraits_courts_inpi": ("Brevets modèles et marques déposés", ("extraits_courts_inpi",)),
    "api/v2/effectifs_mensuels_etablissement_acoss_covid": (
        "Effectifs mensuels par établissement (aides COVID-19)",
        ("effectifs_acoss_covid",),
    ),
    "api/v2/effectifs_mensuels_entreprise_acoss_covid": (
        "Effectifs mensuels par entreprise (aides COVID-19)",
        ("effectifs_acoss_covid",),
    ),
    "api/v2/effectifs_annuels_entreprise_acoss_covid": (
        "Effectifs annuels par entreprise (aides COVID-19)",
        ("effectifs_acoss_covid",),
    ),
}

ENDPOINT_PATHS: frozenset[str] = frozenset(ENDPOINTS)
