"""The demo district's fixed facts: its organisations, places, names and buying habits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.identity import strip_accents

DEMO_PASSWORD = "demo-pilot-2026"
# The login form refuses the reserved ".test" top-level domain; ".example" (RFC 2606) passes.
DEMO_DOMAIN = "demo.quartier.example"
VENUE_LOGINS = ("salle-ferland", "theatre-du-faubourg", "festival-lumieres", "orchestre-de-la-place")

CHUNK_SPECTATORS = 100_000
WRITE_BATCH = 100_000

# The calendar is fixed so that a seed always gives the same district: four seasons starting in
# September 2023, the fourth announced up to December 2026, sales recorded up to 31 October 2026.
SEASON_STARTS = [np.datetime64(f"{year}-09-01") for year in (2023, 2024, 2025, 2026)]
CATALOGUE_END = np.datetime64("2026-12-31")
SALES_END = np.datetime64("2026-11-01T00:00:00", "s")  # exclusive
PLAN_START = np.datetime64("2023-09-01T00:00:00", "s")
PLAN_END = np.datetime64("2026-12-31T00:00:00", "s")
EPOCH = np.datetime64("2020-01-01T00:00:00", "s")
DAY = 86_400
HOUR = 3_600

# --- the district ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgSpec:
    slug: str
    name: str
    kind: str
    code: str  # promo-code stem
    weight: float  # share of the district's demand
    programme: tuple[tuple[str, int], ...]  # (discipline, productions per full season)
    venues: tuple[tuple[str, int], ...]  # (hall, capacity)
    festival_window: tuple[int, int, int] | None = None  # (month, day, length in days)


ORGANISATIONS: tuple[OrgSpec, ...] = (
    OrgSpec(
        "salle-ferland",
        "Salle Ferland",
        "venue",
        "FERLAND",
        10,
        (("music", 34), ("humour", 14), ("dance", 5), ("other", 3)),
        (("Salle Ferland", 2400), ("Studio Ferland", 350)),
    ),
    OrgSpec(
        "theatre-du-faubourg",
        "Théâtre du Faubourg",
        "venue",
        "FAUBOURG",
        7,
        (("theatre", 9),),
        (("Grande salle du Faubourg", 780), ("Salle intime", 220)),
    ),
    OrgSpec(
        "cabaret-sainte-cecile",
        "Cabaret Sainte-Cécile",
        "venue",
        "CECILE",
        5,
        (("music", 40), ("humour", 14)),
        (("Cabaret Sainte-Cécile", 450),),
    ),
    OrgSpec(
        "entrepot-saint-laurent",
        "L'Entrepôt Saint-Laurent",
        "venue",
        "ENTREPOT",
        6,
        (("music", 46),),
        (("L'Entrepôt", 900), ("La Cave", 250)),
    ),
    OrgSpec(
        "theatre-marquette",
        "Théâtre Marquette",
        "venue",
        "MARQUETTE",
        6,
        (("theatre", 5), ("humour", 16), ("music", 10)),
        (("Théâtre Marquette", 1100),),
    ),
    OrgSpec(
        "studio-des-ecluses",
        "Studio des Écluses",
        "venue",
        "ECLUSES",
        3,
        (("dance", 8), ("theatre", 4), ("other", 4)),
        (("Studio des Écluses", 300), ("Salle B", 200)),
    ),
    OrgSpec(
        "espace-bleury",
        "Espace Bleury",
        "venue",
        "BLEURY",
        3,
        (("music", 22), ("circus", 2), ("other", 4)),
        (("Espace Bleury", 1500),),
    ),
    OrgSpec(
        "orchestre-de-la-place",
        "Orchestre de la Place",
        "company",
        "ORCHESTRE",
        7,
        (("classical", 30),),
        (("Salle de la Place", 1900),),
    ),
    OrgSpec(
        "opera-du-square", "Opéra du Square", "company", "OPERA", 4, (("classical", 5),), (("Théâtre du Square", 2800),)
    ),
    OrgSpec(
        "ensemble-baroque-hochelaga",
        "Ensemble baroque Hochelaga",
        "company",
        "BAROQUE",
        2,
        (("classical", 14),),
        (("Chapelle Hochelaga", 400),),
    ),
    OrgSpec(
        "danse-mouvante",
        "Compagnie Danse Mouvante",
        "company",
        "MOUVANTE",
        2,
        (("dance", 5),),
        (("Studio Mouvante", 250), ("Scène Berri", 850)),
    ),
    OrgSpec(
        "ballet-saint-urbain",
        "Ballet Saint-Urbain",
        "company",
        "BALLET",
        4,
        (("dance", 5),),
        (("Théâtre Saint-Urbain", 1450),),
    ),
    OrgSpec(
        "troupe-haute-voltige",
        "Troupe Haute Voltige",
        "company",
        "VOLTIGE",
        5,
        (("circus", 3),),
        (("Chapiteau des Écluses", 1500),),
    ),
    OrgSpec(
        "collectif-trapeze-nord",
        "Collectif Trapèze Nord",
        "company",
        "TRAPEZE",
        2,
        (("circus", 3),),
        (("Hangar Trapèze", 600),),
    ),
    OrgSpec(
        "theatre-oiseau-lyre",
        "Théâtre de l'Oiseau-Lyre",
        "company",
        "OISEAU",
        3,
        (("theatre", 5),),
        (("Salle de l'Oiseau-Lyre", 420),),
    ),
    OrgSpec(
        "productions-rires-urbains",
        "Productions Rires urbains",
        "company",
        "RIRES",
        5,
        (("humour", 24),),
        (("Scène Rires urbains", 650), ("Club Rires urbains", 300)),
    ),
    OrgSpec(
        "festival-lumieres",
        "Festival Lumières",
        "festival",
        "LUMIERES",
        8,
        (("festival", 50), ("music", 14), ("circus", 4)),
        (("Esplanade Lumières", 3000), ("Chapiteau Lumières", 1200)),
        (2, 20, 17),
    ),
    OrgSpec(
        "festival-nuits-metissees",
        "Festival Nuits métissées",
        "festival",
        "NUITS",
        7,
        (("festival", 45), ("music", 20)),
        (("Parterre des Nuits", 2500), ("Club des Nuits", 350)),
        (7, 3, 11),
    ),
    OrgSpec(
        "festival-rire-en-ville",
        "Festival Rire en ville",
        "festival",
        "RIRE",
        5,
        (("festival", 30), ("humour", 20)),
        (("Scène Rire en ville", 1000), ("Cabaret du festival", 300)),
        (7, 14, 14),
    ),
    OrgSpec(
        "festival-corps-en-scene",
        "Festival Corps en scène",
        "festival",
        "CORPS",
        2,
        (("festival", 16), ("dance", 8)),
        (("Scène Corps en scène", 700),),
        (5, 24, 14),
    ),
)

# Per discipline: performances per production (low, high), median ticket price ($), duration
# (minutes), usual curtain times, and the share of weekend matinees.
DISCIPLINE_PROFILE = {
    "music": dict(runs=(1, 2), price=55, duration=120, curtain=("20:00",), matinee=0.0),
    "theatre": dict(runs=(12, 28), price=48, duration=105, curtain=("19:30", "20:00"), matinee=0.5),
    "dance": dict(runs=(3, 8), price=45, duration=75, curtain=("19:30", "20:00"), matinee=0.2),
    "humour": dict(runs=(1, 4), price=52, duration=100, curtain=("20:00",), matinee=0.0),
    "circus": dict(runs=(14, 36), price=70, duration=110, curtain=("19:30",), matinee=0.6),
    "classical": dict(runs=(1, 3), price=62, duration=120, curtain=("19:30",), matinee=0.15),
    "festival": dict(runs=(1, 2), price=42, duration=90, curtain=("17:00", "19:00", "21:00", "22:30"), matinee=0.0),
    "other": dict(runs=(1, 1), price=22, duration=70, curtain=("19:00",), matinee=0.0),
}

# Real forward sortation areas with a rough weight: the central boroughs buy most, then the rest
# of the island, Laval and the South Shore, and a few visitors from farther away.
_CENTRAL = (
    "H2J H2T H2W H2H H2L H2X H2V H2R H2S H2G H2E H1X H1V H1W H2K H3H H3G H3A H2Y H2Z "
    "H4A H4B H3Z H3Y H4C H4G H4H H3J H3K H3L H2P H2M H3T H3S H3V H3W H2C"
).split()
_ISLAND = (
    "H1A H1B H1C H1E H1G H1H H1J H1K H1L H1M H1N H1P H1R H1S H1T H1Y H1Z H2A H2B H2N "
    "H3B H3C H3E H3M H3N H3P H3R H3X H4E H4J H4K H4L H4M H4N H4P H4R H4S H4T H4V H4W "
    "H4X H4Y H8N H8P H8R H8S H8T H8Y H8Z H9A H9B H9C H9E H9G H9H H9J H9K H9P H9R H9S "
    "H9W H9X"
).split()
_LAVAL = "H7A H7B H7C H7E H7G H7H H7J H7K H7L H7M H7N H7P H7R H7S H7T H7V H7W H7X H7Y".split()
_SOUTH_SHORE = "J4B J4G J4H J4J J4K J4L J4M J4N J4P J4R J4S J4T J4V J4W J4X J4Y J4Z J3Y J5R".split()
_FARTHER = "G1R G1V J1H J8Y K1P M5V".split()
FSAS = tuple(_CENTRAL + _ISLAND + _LAVAL + _SOUTH_SHORE + _FARTHER)
_FSA_WEIGHT = np.array(
    [5.0] * len(_CENTRAL)
    + [1.6] * len(_ISLAND)
    + [1.7] * len(_LAVAL)
    + [1.7] * len(_SOUTH_SHORE)
    + [1.5] * len(_FARTHER)
)
FSA_P = _FSA_WEIGHT / _FSA_WEIGHT.sum()
_FSA_REGION = np.array(
    [0] * (len(_CENTRAL) + len(_ISLAND)) + [1] * len(_LAVAL) + [2] * len(_SOUTH_SHORE) + [3] * len(_FARTHER)
)
_FARTHER_AREA = {"G1R": "418", "G1V": "418", "J1H": "819", "J8Y": "819", "K1P": "613", "M5V": "416"}
_LDU_LETTERS = np.array(list("ABCEGHJKLMNPRSTVWXYZ"))

_STREETS = (
    (
        "rue Saint-Denis",
        "boulevard Saint-Laurent",
        "rue Sainte-Catherine Est",
        "avenue du Mont-Royal Est",
        "rue Ontario Est",
        "rue Sherbrooke Ouest",
        "avenue Papineau",
        "rue Beaubien Est",
        "rue Jean-Talon Est",
        "avenue Laurier Ouest",
        "rue Rachel Est",
        "rue Fleury Est",
        "boulevard Décarie",
        "avenue Monkland",
        "chemin de la Côte-des-Neiges",
        "rue Wellington",
        "rue Notre-Dame Ouest",
        "avenue de l'Esplanade",
        "rue de Bleury",
        "rue Saint-Hubert",
        "avenue Christophe-Colomb",
        "rue Masson",
        "rue De Lorimier",
    ),
    (
        "boulevard des Laurentides",
        "boulevard de la Concorde Est",
        "boulevard Saint-Martin Ouest",
        "boulevard Lévesque Est",
        "rue Principale",
        "avenue des Bois",
    ),
    (
        "chemin de Chambly",
        "rue Saint-Charles Ouest",
        "boulevard Taschereau",
        "rue Victoria",
        "boulevard de Rome",
        "rue de Montarville",
        "boulevard Cousineau",
    ),
    ("rue Saint-Jean", "rue King Ouest", "rue Laurier", "Sparks Street", "King Street West"),
)

_FR_FIRST = (
    "Marie Julie Isabelle Catherine Nathalie Geneviève Mélanie Valérie Stéphanie Émilie Camille Léa "
    "Chloé Florence Rosalie Sarah Gabrielle Audrey Sophie Annie Josée Chantal Sylvie Louise Francine "
    "Jean Pierre Luc Marc François Martin Stéphane Sébastien Éric Patrick Mathieu Simon Alexandre "
    "Olivier Gabriel Félix Samuel William Thomas Antoine Louis Émile Nicolas Jérôme Benoît Guy "
    "Michel Denis Réjean Yves Jacques Daniel Karine Maude Ariane Noémie Fatima Amina Yasmine Karim "
    "Mohamed Widline Jean-Philippe Marie-Ève Anne-Marie Marc-André Hélène Zoé Laurent"
).split()
_EN_FIRST = (
    "Emily Sarah Jessica Jennifer Emma Olivia Hannah Rachel Laura Megan Susan Karen Linda Margaret "
    "Grace Chloe Michael David James John Robert Daniel Matthew Andrew Christopher Ryan Kevin Brian "
    "Jason Adam Jonathan Benjamin Noah Liam Ethan Aaron Mark Paul Peter Wei Priya Raj Mei Ana Sofia "
    "Marco Luca Giulia Samir Leila"
).split()
_FR_LAST = (
    "Tremblay Gagnon Roy Côté Bouchard Gauthier Morin Lavoie Fortin Gagné Ouellet Pelletier Bélanger "
    "Lévesque Bergeron Leblanc Paquette Girard Simard Boucher Caron Beaulieu Cloutier Dubé Poirier "
    "Fournier Lapointe Leclerc Lefebvre Poulin Thibault St-Pierre Nadeau Martin Landry Martel Bédard "
    "Grenier Lessard Bernier Richard Michaud Hébert Desjardins Couture Turcotte Lachance Parent Blais "
    "Gosselin Savard Proulx Beaudoin Demers Perreault Boudreau Lemieux Cyr Perron Dufour Dion Mercier "
    "Bolduc Bérubé Boisvert Langlois Ménard Lapierre Benoît Vallée Charbonneau Tessier Jean-Baptiste "
    "Pierre-Louis Joseph Benali Haddad Khoury Nguyen Tran Bianchi Rossi Da Silva Côté-Lévesque"
).split()
_EN_LAST = (
    "Smith Brown Wilson Campbell Stewart MacDonald Johnson Taylor Williams Anderson Thompson Murphy "
    "O'Brien Kelly Walsh Scott Mitchell Robertson Reid Ross Fraser Young Graham Kennedy Clarke Morrison "
    "Hughes White Harris Lee Wong Chen Nguyen Singh Cohen Levy Rossi Russo Ferreira Patel Greenberg "
    "Sullivan Miller Davis"
).split()


def _ascii_slug(name: str) -> str:
    return "".join(c for c in strip_accents(name).lower() if c.isalnum() or c == "-")


_FR_FIRST_A = [_ascii_slug(n) for n in _FR_FIRST]
_EN_FIRST_A = [_ascii_slug(n) for n in _EN_FIRST]
_FR_LAST_A = [_ascii_slug(n) for n in _FR_LAST]
_EN_LAST_A = [_ascii_slug(n) for n in _EN_LAST]

_TITLE_WORDS = {
    "music": (
        [
            "Les Lucioles",
            "Les Hirondelles",
            "Les Comètes",
            "Les Marées",
            "Les Boussoles",
            "Néons",
            "Les Ruelles",
            "Échos",
            "Les Satellites",
            "Orange Sanguine",
            "Les Voisins",
            "Velours",
        ],
        [
            "électriques",
            "du Nord",
            "sauvages",
            "de minuit",
            "magnétiques",
            "en tournée",
            "live",
            "– nouvel album",
            "acoustique",
            "et invités",
        ],
    ),
    "theatre": (
        [
            "La Ligne de partage",
            "Les Fenêtres d'octobre",
            "Le Dernier Tramway",
            "Appartement 4B",
            "Ce que la neige cache",
            "Les Héritiers",
            "La Traversée",
            "Un ennemi du peuple",
            "Les Belles-Sœurs du port",
            "Le Jardin de verre",
            "Huis clos à l'aube",
            "Le Procès",
        ],
        ["", "", "(création)", "(reprise)", "– version intégrale"],
    ),
    "dance": (
        [
            "Corps célestes",
            "Gravité",
            "Fragments",
            "Pulsations",
            "Terre battue",
            "Lignes de fuite",
            "Migrations",
            "Souffle",
            "Rituels",
            "Béton",
        ],
        ["", "(création)", "– programme double"],
    ),
    "humour": (
        [
            "Pas le choix",
            "Tout va bien",
            "Sans filtre",
            "Nouveau spectacle",
            "En rodage",
            "Presque adulte",
            "Vrai de vrai",
            "Le bon côté",
        ],
        [],
    ),
    "circus": (
        [
            "Vertiges",
            "Apesanteur",
            "Funambules",
            "Le Grand Chapiteau",
            "Équilibres",
            "Voltige",
            "Contrepoids",
            "Trapèzes",
        ],
        ["", "(création)", "– nouvelle version"],
    ),
    "classical": (
        [
            "Beethoven – Symphonie n° 7",
            "Mahler – Symphonie n° 2",
            "Bach – Passion selon saint Matthieu",
            "Mozart – Requiem",
            "Brahms et Schumann",
            "Ravel – Boléro",
            "Vivaldi – Les Quatre Saisons",
            "Debussy – La Mer",
            "Verdi – La Traviata",
            "Puccini – La Bohème",
            "Bizet – Carmen",
            "Mozart – Don Giovanni",
            "Haendel – Le Messie",
            "Chostakovitch – Symphonie n° 5",
            "Sibelius – Concerto pour violon",
            "Dvořák – Symphonie du Nouveau Monde",
        ],
        [],
    ),
    "festival": (
        [
            "Soirée d'ouverture",
            "Scène extérieure",
            "Grand spectacle de clôture",
            "Nuit blanche",
            "Cabaret du festival",
            "Série découvertes",
            "Carte blanche",
            "Plein air",
        ],
        [],
    ),
    "other": (
        [
            "Conférence : l'avenir des salles",
            "Projection : les années cabaret",
            "Rencontre d'artistes",
            "Causerie du dimanche",
            "Lecture publique",
        ],
        [],
    ),
}
_COMPANIES = (
    "Théâtre de la Ruelle",
    "Compagnie Marée haute",
    "Productions Velours",
    "Collectif Ballast",
    "Les Productions du Square",
    "Compagnie des Quatre Vents",
    "Productions Minuit",
    "Troupe du Parvis",
)

# Per order: probabilities of keeping to the favourite organisation, staying in one's discipline,
# and crossing to any other; channel mix; party sizes.
P_FAVOURITE, P_SAME_DISCIPLINE = 0.55, 0.22
CHANNELS = np.array(["web", "box_office", "phone"], dtype=object)
CHANNEL_P = np.array([0.64, 0.22, 0.14])
PARTY_P = np.array([0.24, 0.56, 0.08, 0.12])
CIRCUMSTANCE = np.array(["regular", "promotion", "complimentary", "other"], dtype=object)
SUBSCRIPTION_DISCOUNT = 0.85
PROMO_KINDS = (("{code}{yy}", 0.80), ("DUO-{code}", 0.60), ("{code}-DERNIERE", 0.70))
