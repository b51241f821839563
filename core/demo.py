"""The demo district: a fictional, deterministic Montreal district, generated in vectors and bulk-loaded."""

from __future__ import annotations

import datetime as dt
import importlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import func, insert, select, text

from core import sql
from core.identity import identity_basis, spectator_key, strip_accents
from core.importing import show_natural_key
from core.models import DISCIPLINES, AuditEvent, Organisation, User, utcnow

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
    code: str                                  # promo-code stem
    weight: float                              # share of the district's demand
    programme: tuple[tuple[str, int], ...]     # (discipline, productions per full season)
    venues: tuple[tuple[str, int], ...]        # (hall, capacity)
    festival_window: tuple[int, int, int] | None = None  # (month, day, length in days)


ORGANISATIONS: tuple[OrgSpec, ...] = (
    OrgSpec("salle-ferland", "Salle Ferland", "venue", "FERLAND", 10,
            (("music", 34), ("humour", 14), ("dance", 5), ("other", 3)),
            (("Salle Ferland", 2400), ("Studio Ferland", 350))),
    OrgSpec("theatre-du-faubourg", "Théâtre du Faubourg", "venue", "FAUBOURG", 7,
            (("theatre", 9),), (("Grande salle du Faubourg", 780), ("Salle intime", 220))),
    OrgSpec("cabaret-sainte-cecile", "Cabaret Sainte-Cécile", "venue", "CECILE", 5,
            (("music", 40), ("humour", 14)), (("Cabaret Sainte-Cécile", 450),)),
    OrgSpec("entrepot-saint-laurent", "L'Entrepôt Saint-Laurent", "venue", "ENTREPOT", 6,
            (("music", 46),), (("L'Entrepôt", 900), ("La Cave", 250))),
    OrgSpec("theatre-marquette", "Théâtre Marquette", "venue", "MARQUETTE", 6,
            (("theatre", 5), ("humour", 16), ("music", 10)), (("Théâtre Marquette", 1100),)),
    OrgSpec("studio-des-ecluses", "Studio des Écluses", "venue", "ECLUSES", 3,
            (("dance", 8), ("theatre", 4), ("other", 4)), (("Studio des Écluses", 300), ("Salle B", 200))),
    OrgSpec("espace-bleury", "Espace Bleury", "venue", "BLEURY", 3,
            (("music", 22), ("circus", 2), ("other", 4)), (("Espace Bleury", 1500),)),
    OrgSpec("orchestre-de-la-place", "Orchestre de la Place", "company", "ORCHESTRE", 7,
            (("classical", 30),), (("Salle de la Place", 1900),)),
    OrgSpec("opera-du-square", "Opéra du Square", "company", "OPERA", 4,
            (("classical", 5),), (("Théâtre du Square", 2800),)),
    OrgSpec("ensemble-baroque-hochelaga", "Ensemble baroque Hochelaga", "company", "BAROQUE", 2,
            (("classical", 14),), (("Chapelle Hochelaga", 400),)),
    OrgSpec("danse-mouvante", "Compagnie Danse Mouvante", "company", "MOUVANTE", 2,
            (("dance", 5),), (("Studio Mouvante", 250), ("Scène Berri", 850))),
    OrgSpec("ballet-saint-urbain", "Ballet Saint-Urbain", "company", "BALLET", 4,
            (("dance", 5),), (("Théâtre Saint-Urbain", 1450),)),
    OrgSpec("troupe-haute-voltige", "Troupe Haute Voltige", "company", "VOLTIGE", 5,
            (("circus", 3),), (("Chapiteau des Écluses", 1500),)),
    OrgSpec("collectif-trapeze-nord", "Collectif Trapèze Nord", "company", "TRAPEZE", 2,
            (("circus", 3),), (("Hangar Trapèze", 600),)),
    OrgSpec("theatre-oiseau-lyre", "Théâtre de l'Oiseau-Lyre", "company", "OISEAU", 3,
            (("theatre", 5),), (("Salle de l'Oiseau-Lyre", 420),)),
    OrgSpec("productions-rires-urbains", "Productions Rires urbains", "company", "RIRES", 5,
            (("humour", 24),), (("Scène Rires urbains", 650), ("Club Rires urbains", 300))),
    OrgSpec("festival-lumieres", "Festival Lumières", "festival", "LUMIERES", 8,
            (("festival", 50), ("music", 14), ("circus", 4)),
            (("Esplanade Lumières", 3000), ("Chapiteau Lumières", 1200)), (2, 20, 17)),
    OrgSpec("festival-nuits-metissees", "Festival Nuits métissées", "festival", "NUITS", 7,
            (("festival", 45), ("music", 20)), (("Parterre des Nuits", 2500), ("Club des Nuits", 350)),
            (7, 3, 11)),
    OrgSpec("festival-rire-en-ville", "Festival Rire en ville", "festival", "RIRE", 5,
            (("festival", 30), ("humour", 20)), (("Scène Rire en ville", 1000), ("Cabaret du festival", 300)),
            (7, 14, 14)),
    OrgSpec("festival-corps-en-scene", "Festival Corps en scène", "festival", "CORPS", 2,
            (("festival", 16), ("dance", 8)), (("Scène Corps en scène", 700),), (5, 24, 14)),
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
_CENTRAL = ("H2J H2T H2W H2H H2L H2X H2V H2R H2S H2G H2E H1X H1V H1W H2K H3H H3G H3A H2Y H2Z "
            "H4A H4B H3Z H3Y H4C H4G H4H H3J H3K H3L H2P H2M H3T H3S H3V H3W H2C").split()
_ISLAND = ("H1A H1B H1C H1E H1G H1H H1J H1K H1L H1M H1N H1P H1R H1S H1T H1Y H1Z H2A H2B H2N "
           "H3B H3C H3E H3M H3N H3P H3R H3X H4E H4J H4K H4L H4M H4N H4P H4R H4S H4T H4V H4W "
           "H4X H4Y H8N H8P H8R H8S H8T H8Y H8Z H9A H9B H9C H9E H9G H9H H9J H9K H9P H9R H9S "
           "H9W H9X").split()
_LAVAL = "H7A H7B H7C H7E H7G H7H H7J H7K H7L H7M H7N H7P H7R H7S H7T H7V H7W H7X H7Y".split()
_SOUTH_SHORE = "J4B J4G J4H J4J J4K J4L J4M J4N J4P J4R J4S J4T J4V J4W J4X J4Y J4Z J3Y J5R".split()
_FARTHER = "G1R G1V J1H J8Y K1P M5V".split()
FSAS = tuple(_CENTRAL + _ISLAND + _LAVAL + _SOUTH_SHORE + _FARTHER)
_FSA_WEIGHT = np.array([5.0] * len(_CENTRAL) + [1.6] * len(_ISLAND) + [1.7] * len(_LAVAL)
                       + [1.7] * len(_SOUTH_SHORE) + [1.5] * len(_FARTHER))
FSA_P = _FSA_WEIGHT / _FSA_WEIGHT.sum()
_FSA_REGION = np.array([0] * (len(_CENTRAL) + len(_ISLAND)) + [1] * len(_LAVAL) + [2] * len(_SOUTH_SHORE)
                       + [3] * len(_FARTHER))
_FARTHER_AREA = {"G1R": "418", "G1V": "418", "J1H": "819", "J8Y": "819", "K1P": "613", "M5V": "416"}
_LDU_LETTERS = np.array(list("ABCEGHJKLMNPRSTVWXYZ"))

_STREETS = (
    ("rue Saint-Denis", "boulevard Saint-Laurent", "rue Sainte-Catherine Est", "avenue du Mont-Royal Est",
     "rue Ontario Est", "rue Sherbrooke Ouest", "avenue Papineau", "rue Beaubien Est", "rue Jean-Talon Est",
     "avenue Laurier Ouest", "rue Rachel Est", "rue Fleury Est", "boulevard Décarie", "avenue Monkland",
     "chemin de la Côte-des-Neiges", "rue Wellington", "rue Notre-Dame Ouest", "avenue de l'Esplanade",
     "rue de Bleury", "rue Saint-Hubert", "avenue Christophe-Colomb", "rue Masson", "rue De Lorimier"),
    ("boulevard des Laurentides", "boulevard de la Concorde Est", "boulevard Saint-Martin Ouest",
     "boulevard Lévesque Est", "rue Principale", "avenue des Bois"),
    ("chemin de Chambly", "rue Saint-Charles Ouest", "boulevard Taschereau", "rue Victoria",
     "boulevard de Rome", "rue de Montarville", "boulevard Cousineau"),
    ("rue Saint-Jean", "rue King Ouest", "rue Laurier", "Sparks Street", "King Street West"),
)

_FR_FIRST = ("Marie Julie Isabelle Catherine Nathalie Geneviève Mélanie Valérie Stéphanie Émilie Camille Léa "
             "Chloé Florence Rosalie Sarah Gabrielle Audrey Sophie Annie Josée Chantal Sylvie Louise Francine "
             "Jean Pierre Luc Marc François Martin Stéphane Sébastien Éric Patrick Mathieu Simon Alexandre "
             "Olivier Gabriel Félix Samuel William Thomas Antoine Louis Émile Nicolas Jérôme Benoît Guy "
             "Michel Denis Réjean Yves Jacques Daniel Karine Maude Ariane Noémie Fatima Amina Yasmine Karim "
             "Mohamed Widline Jean-Philippe Marie-Ève Anne-Marie Marc-André Hélène Zoé Laurent").split()
_EN_FIRST = ("Emily Sarah Jessica Jennifer Emma Olivia Hannah Rachel Laura Megan Susan Karen Linda Margaret "
             "Grace Chloe Michael David James John Robert Daniel Matthew Andrew Christopher Ryan Kevin Brian "
             "Jason Adam Jonathan Benjamin Noah Liam Ethan Aaron Mark Paul Peter Wei Priya Raj Mei Ana Sofia "
             "Marco Luca Giulia Samir Leila").split()
_FR_LAST = ("Tremblay Gagnon Roy Côté Bouchard Gauthier Morin Lavoie Fortin Gagné Ouellet Pelletier Bélanger "
            "Lévesque Bergeron Leblanc Paquette Girard Simard Boucher Caron Beaulieu Cloutier Dubé Poirier "
            "Fournier Lapointe Leclerc Lefebvre Poulin Thibault St-Pierre Nadeau Martin Landry Martel Bédard "
            "Grenier Lessard Bernier Richard Michaud Hébert Desjardins Couture Turcotte Lachance Parent Blais "
            "Gosselin Savard Proulx Beaudoin Demers Perreault Boudreau Lemieux Cyr Perron Dufour Dion Mercier "
            "Bolduc Bérubé Boisvert Langlois Ménard Lapierre Benoît Vallée Charbonneau Tessier Jean-Baptiste "
            "Pierre-Louis Joseph Benali Haddad Khoury Nguyen Tran Bianchi Rossi Da Silva Côté-Lévesque").split()
_EN_LAST = ("Smith Brown Wilson Campbell Stewart MacDonald Johnson Taylor Williams Anderson Thompson Murphy "
            "O'Brien Kelly Walsh Scott Mitchell Robertson Reid Ross Fraser Young Graham Kennedy Clarke Morrison "
            "Hughes White Harris Lee Wong Chen Nguyen Singh Cohen Levy Rossi Russo Ferreira Patel Greenberg "
            "Sullivan Miller Davis").split()


def _ascii_slug(name: str) -> str:
    return "".join(c for c in strip_accents(name).lower() if c.isalnum() or c == "-")


_FR_FIRST_A = [_ascii_slug(n) for n in _FR_FIRST]
_EN_FIRST_A = [_ascii_slug(n) for n in _EN_FIRST]
_FR_LAST_A = [_ascii_slug(n) for n in _FR_LAST]
_EN_LAST_A = [_ascii_slug(n) for n in _EN_LAST]

_TITLE_WORDS = {
    "music": (["Les Lucioles", "Les Hirondelles", "Les Comètes", "Les Marées", "Les Boussoles", "Néons",
               "Les Ruelles", "Échos", "Les Satellites", "Orange Sanguine", "Les Voisins", "Velours"],
              ["électriques", "du Nord", "sauvages", "de minuit", "magnétiques", "en tournée", "live",
               "– nouvel album", "acoustique", "et invités"]),
    "theatre": (["La Ligne de partage", "Les Fenêtres d'octobre", "Le Dernier Tramway", "Appartement 4B",
                 "Ce que la neige cache", "Les Héritiers", "La Traversée", "Un ennemi du peuple",
                 "Les Belles-Sœurs du port", "Le Jardin de verre", "Huis clos à l'aube", "Le Procès"],
                ["", "", "(création)", "(reprise)", "– version intégrale"]),
    "dance": (["Corps célestes", "Gravité", "Fragments", "Pulsations", "Terre battue", "Lignes de fuite",
               "Migrations", "Souffle", "Rituels", "Béton"], ["", "(création)", "– programme double"]),
    "humour": (["Pas le choix", "Tout va bien", "Sans filtre", "Nouveau spectacle", "En rodage",
                "Presque adulte", "Vrai de vrai", "Le bon côté"], []),
    "circus": (["Vertiges", "Apesanteur", "Funambules", "Le Grand Chapiteau", "Équilibres", "Voltige",
                "Contrepoids", "Trapèzes"], ["", "(création)", "– nouvelle version"]),
    "classical": (["Beethoven – Symphonie n° 7", "Mahler – Symphonie n° 2", "Bach – Passion selon saint Matthieu",
                   "Mozart – Requiem", "Brahms et Schumann", "Ravel – Boléro", "Vivaldi – Les Quatre Saisons",
                   "Debussy – La Mer", "Verdi – La Traviata", "Puccini – La Bohème", "Bizet – Carmen",
                   "Mozart – Don Giovanni", "Haendel – Le Messie", "Chostakovitch – Symphonie n° 5",
                   "Sibelius – Concerto pour violon", "Dvořák – Symphonie du Nouveau Monde"], []),
    "festival": (["Soirée d'ouverture", "Scène extérieure", "Grand spectacle de clôture", "Nuit blanche",
                  "Cabaret du festival", "Série découvertes", "Carte blanche", "Plein air"], []),
    "other": (["Conférence : l'avenir des salles", "Projection : les années cabaret", "Rencontre d'artistes",
               "Causerie du dimanche", "Lecture publique"], []),
}
_COMPANIES = ("Théâtre de la Ruelle", "Compagnie Marée haute", "Productions Velours", "Collectif Ballast",
              "Les Productions du Square", "Compagnie des Quatre Vents", "Productions Minuit", "Troupe du Parvis")

# Per order: probabilities of keeping to the favourite organisation, staying in one's discipline,
# and crossing to any other; channel mix; party sizes.
P_FAVOURITE, P_SAME_DISCIPLINE = 0.55, 0.22
CHANNELS = np.array(["web", "box_office", "phone"], dtype=object)
CHANNEL_P = np.array([0.64, 0.22, 0.14])
PARTY_P = np.array([0.24, 0.56, 0.08, 0.12])
CIRCUMSTANCE = np.array(["regular", "promotion", "complimentary", "other"], dtype=object)
SUBSCRIPTION_DISCOUNT = 0.85
PROMO_KINDS = (("{code}{yy}", 0.80), ("DUO-{code}", 0.60), ("{code}-DERNIERE", 0.70))


# --- the catalogue ---------------------------------------------------------------------------


@dataclass
class Catalogue:
    """Organisations, halls, productions and performances, as plain arrays."""

    venue_org: np.ndarray
    venue_name: list[str]
    venue_capacity: np.ndarray
    # performances, sorted by start time (index = id − first id)
    show_org: np.ndarray
    show_venue: np.ndarray
    show_disc: np.ndarray
    show_start: np.ndarray          # seconds since EPOCH
    show_duration: np.ndarray
    show_price: np.ndarray          # cents per ticket
    show_season: np.ndarray
    show_title: list[str]
    show_company: list[str | None]
    show_key: list[str]
    # productions: CSR lists of their performances, grouped by (organisation, season)
    prod_shows: np.ndarray
    prod_offsets: np.ndarray
    orgseason_offsets: np.ndarray   # productions of (org, season) = [offsets[o*S+s], offsets[o*S+s+1])
    # demand groups (organisation, discipline) and their performances sorted by (group, start)
    group_org: np.ndarray
    group_disc: np.ndarray
    group_weight: np.ndarray
    group_keys: np.ndarray
    group_shows: np.ndarray
    group_lo: np.ndarray
    group_hi: np.ndarray
    promo_codes: np.ndarray          # [org, kind, season] → code


def _seconds(value: np.datetime64) -> int:
    return int((value.astype("datetime64[s]") - EPOCH).astype(np.int64))


def _title(rng: np.random.Generator, disc: str, org: OrgSpec) -> tuple[str, str | None]:
    heads, tails = _TITLE_WORDS[disc]
    head = heads[rng.integers(len(heads))]
    if disc == "music":
        if rng.random() < 0.4:
            first = _FR_FIRST[rng.integers(len(_FR_FIRST))]
            last = _FR_LAST[rng.integers(len(_FR_LAST))]
            head = f"{first} {last}" + ("" if rng.random() < 0.6 else " Quartet")
        tail = tails[rng.integers(len(tails))]
        return f"{head} {tail}".strip(), None
    if disc == "humour":
        first = _FR_FIRST[rng.integers(len(_FR_FIRST))]
        last = _FR_LAST[rng.integers(len(_FR_LAST))]
        return f"{first} {last} – {head}", None
    if disc == "festival":
        return f"{org.name} – {head}", org.name
    title = head if not tails else f"{head} {tails[rng.integers(len(tails))]}".strip()
    if org.kind == "venue" and disc in ("theatre", "dance", "circus"):
        return title, _COMPANIES[rng.integers(len(_COMPANIES))]
    return title, org.name if org.kind == "company" else None


def build_catalogue(seed: int) -> Catalogue:
    """The district's organisations, halls and three and a bit seasons of shows for ``seed``."""
    rng = np.random.default_rng([seed, 1])
    n_orgs, n_seasons = len(ORGANISATIONS), len(SEASON_STARTS)
    venue_org, venue_name, venue_capacity, org_venues = [], [], [], []
    for o, spec in enumerate(ORGANISATIONS):
        org_venues.append([])
        for name, capacity in spec.venues:
            org_venues[o].append(len(venue_name))
            venue_org.append(o)
            venue_name.append(name)
            venue_capacity.append(capacity)

    shows: list[tuple] = []   # (start_s, org, venue, disc, duration, price, season, title, company, production)
    productions: list[tuple[int, int]] = []  # (org, season) of each production
    for o, spec in enumerate(ORGANISATIONS):
        for s, season_start in enumerate(SEASON_STARTS):
            season_days = 290 if s < n_seasons - 1 else int((CATALOGUE_END - season_start).astype(int)) - 10
            fraction = season_days / 290
            for disc, per_season in spec.programme:
                profile = DISCIPLINE_PROFILE[disc]
                count = int(round(per_season * fraction * rng.uniform(0.85, 1.15)))
                in_festival = spec.festival_window is not None
                if in_festival:
                    month, day, length = spec.festival_window
                    year = int(str(season_start)[:4]) + (1 if month < 9 else 0)
                    window_start = np.datetime64(f"{year}-{month:02d}-{day:02d}")
                    if window_start > CATALOGUE_END:
                        continue
                    count = int(round(per_season * rng.uniform(0.85, 1.15)))
                for _ in range(max(count, 1)):
                    p = len(productions)
                    productions.append((o, s))
                    title, company = _title(rng, disc, spec)
                    runs_lo, runs_hi = profile["runs"]
                    n_perf = int(rng.integers(runs_lo, runs_hi + 1))
                    if in_festival:
                        first_day = window_start + int(rng.integers(0, length))
                        n_perf = 1 if rng.random() < 0.7 else 2
                    else:
                        first_day = season_start + 9 + int(rng.integers(0, max(season_days - 10, 1)))
                    venue = org_venues[o][0] if len(org_venues[o]) == 1 or rng.random() < 0.65 \
                        else org_venues[o][1 + int(rng.integers(len(org_venues[o]) - 1))]
                    duration = int(profile["duration"] * rng.uniform(0.85, 1.2)) // 5 * 5
                    if title.startswith(("Verdi", "Puccini", "Bizet", "Mozart – Don")):
                        duration = 180
                    price = int(np.rint(profile["price"] * rng.lognormal(0, 0.25) * 2)) * 50
                    curtain = profile["curtain"][rng.integers(len(profile["curtain"]))]
                    day = first_day
                    for k in range(n_perf):
                        if in_festival and k:
                            day = day + 1
                        # Runs skip Mondays (the theatres' day off).
                        while not in_festival and (day.astype("datetime64[D]").astype(np.int64) - 4) % 7 == 0:
                            day = day + 1
                        weekday = int((day.astype("datetime64[D]").astype(np.int64) - 4) % 7)  # 0 = Monday
                        at = curtain
                        if weekday >= 5 and rng.random() < profile["matinee"]:
                            at = "14:00"
                        if in_festival:
                            at = profile["curtain"][rng.integers(len(profile["curtain"]))]
                        hh, mm = map(int, at.split(":"))
                        start = _seconds(day) + hh * HOUR + mm * 60
                        if day <= CATALOGUE_END:
                            shows.append((start, o, venue, DISCIPLINES.index(disc), duration, price, s,
                                          title, company, p))
                        day = day + 1

    # One performance per (organisation, title, start, hall): the importer's natural key.
    shows.sort(key=lambda r: (r[0], r[1], r[2], r[9]))
    seen, kept = set(), []
    for row in shows:
        starts = dt.datetime(2020, 1, 1) + dt.timedelta(seconds=row[0])
        key = show_natural_key(row[7], starts, venue_name[row[2]])
        if (row[1], key) in seen:
            continue
        seen.add((row[1], key))
        kept.append(row + (key,))
    shows = kept
    arr = lambda i, dtype=np.int64: np.array([r[i] for r in shows], dtype=dtype)  # noqa: E731
    show_start, show_org, show_venue, show_disc = arr(0), arr(1), arr(2), arr(3)
    show_season, show_prod = arr(6), arr(9)

    # Productions, grouped by (organisation, season), each with its performances.
    prod_org = np.array([p[0] for p in productions])
    prod_season = np.array([p[1] for p in productions])
    prod_order = np.lexsort((np.arange(len(productions)), prod_season, prod_org))
    has_show = np.zeros(len(productions), bool)
    has_show[show_prod] = True
    prod_order = prod_order[has_show[prod_order]]
    new_index = np.full(len(productions), -1)
    new_index[prod_order] = np.arange(len(prod_order))
    sp = new_index[show_prod]
    by_prod = np.lexsort((show_start, sp))
    prod_offsets = np.concatenate([[0], np.cumsum(np.bincount(sp, minlength=len(prod_order)))])
    orgseason = prod_org[prod_order] * n_seasons + prod_season[prod_order]
    orgseason_offsets = np.searchsorted(orgseason, np.arange(n_orgs * n_seasons + 1))

    # Demand groups: each organisation's disciplines, weighted by its share and its programme.
    g_org, g_disc, g_weight = [], [], []
    for o, spec in enumerate(ORGANISATIONS):
        total = sum(n for _, n in spec.programme)
        for disc, n in spec.programme:
            g_org.append(o)
            g_disc.append(DISCIPLINES.index(disc))
            # Festivals are sold on their headline: the festival label carries most demand.
            share = (n / total) ** 0.7
            g_weight.append(spec.weight * share)
    g_org, g_disc, g_weight = np.array(g_org), np.array(g_disc), np.array(g_weight, float)
    g_weight /= g_weight.sum()
    group_of = {(o, d): g for g, (o, d) in enumerate(zip(g_org.tolist(), g_disc.tolist()))}
    show_group = np.array([group_of[(o, d)] for o, d in zip(show_org.tolist(), show_disc.tolist())])
    by_group = np.lexsort((show_start, show_group))
    group_keys = show_group[by_group] * (1 << 34) + show_start[by_group]
    group_lo = np.searchsorted(show_group[by_group], np.arange(len(g_org)), "left")
    group_hi = np.searchsorted(show_group[by_group], np.arange(len(g_org)), "right")
    if np.any(group_hi <= group_lo):
        raise RuntimeError("a demand group has no performance")

    codes = np.empty((n_orgs, len(PROMO_KINDS), n_seasons), dtype=object)
    for o, spec in enumerate(ORGANISATIONS):
        for k, (pattern, _) in enumerate(PROMO_KINDS):
            for s, season_start in enumerate(SEASON_STARTS):
                codes[o, k, s] = pattern.format(code=spec.code, yy=str(season_start)[2:4])

    return Catalogue(
        venue_org=np.array(venue_org), venue_name=venue_name, venue_capacity=np.array(venue_capacity),
        show_org=show_org, show_venue=show_venue, show_disc=show_disc, show_start=show_start,
        show_duration=arr(4), show_price=arr(5), show_season=show_season,
        show_title=[r[7] for r in shows], show_company=[r[8] for r in shows], show_key=[r[10] for r in shows],
        prod_shows=by_prod, prod_offsets=prod_offsets, orgseason_offsets=orgseason_offsets,
        group_org=g_org, group_disc=g_disc, group_weight=g_weight, group_keys=group_keys,
        group_shows=by_group, group_lo=group_lo, group_hi=group_hi, promo_codes=codes,
    )


# --- spectators and their purchases ---------------------------------------------------------


def _plus_two_years(seconds: np.ndarray) -> np.ndarray:
    """The same calendar date and time two years later (29 February → 28 February)."""
    t = EPOCH + seconds.astype("timedelta64[s]")
    days = t.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    day_in_month = (days - months.astype("datetime64[D]")).astype(np.int64)
    target_month = (months + 24)
    month_len = ((target_month + 1).astype("datetime64[D]") - target_month.astype("datetime64[D]")).astype(np.int64)
    target_day = target_month.astype("datetime64[D]") + np.minimum(day_in_month, month_len - 1)
    time_of_day = (t - days.astype("datetime64[s]")).astype(np.int64)
    return (target_day.astype("datetime64[s]") - EPOCH).astype(np.int64) + time_of_day


def _hours(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Seconds after midnight of a purchase, by channel: web in the evening and at lunch, the box
    office in its opening hours, the phone line in office hours."""
    n = len(channel)
    u = rng.random(n)
    web = np.where(u < 0.15, rng.normal(9.5, 1.5, n),
                   np.where(u < 0.42, rng.normal(12.5, 1.2, n),
                            np.where(u < 0.95, rng.normal(20.5, 1.6, n), rng.uniform(0, 24, n))))
    box = rng.uniform(12, 20, n)
    phone = rng.uniform(10, 17, n)
    hours = np.select([channel == 0, channel == 1], [web, box], phone)
    return (np.clip(hours, 0, 23.99) * HOUR).astype(np.int64)


def _pick(rng: np.random.Generator, p: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(p) / np.sum(p), rng.random(n), side="right").clip(0, len(p) - 1)


def _choose_shows(rng: np.random.Generator, cat: Catalogue, group: np.ndarray, when: np.ndarray) -> np.ndarray:
    """A performance of ``group`` around ``when``: the nearest one, then any within six weeks of it."""
    keys = group * (1 << 34) + when
    idx = np.searchsorted(cat.group_keys, keys)
    lo, hi = cat.group_lo[group], cat.group_hi[group]
    after = np.minimum(idx, hi - 1)
    before = np.maximum(np.minimum(idx - 1, hi - 1), lo)
    nearest = np.where(np.abs(cat.group_keys[after] - keys) <= np.abs(cat.group_keys[before] - keys), after, before)
    centre = cat.group_keys[nearest]
    w_lo = np.searchsorted(cat.group_keys, centre - 42 * DAY, "left")
    w_hi = np.searchsorted(cat.group_keys, centre + 42 * DAY, "right")
    chosen = w_lo + (rng.random(len(group)) * (w_hi - w_lo)).astype(np.int64)
    return cat.group_shows[np.clip(chosen, lo, hi - 1)]


def generate_chunk(cat: Catalogue, seed: int, chunk: int, n: int, first_number: int) -> dict:
    """Spectators ``first_number .. first_number + n - 1`` and their purchases, as arrays.

    Deterministic in (seed, chunk, n). Spectator positions are local to the chunk (0..n-1).
    """
    rng = np.random.default_rng([seed, 2, chunk])

    # Activity: most come once; a loyal minority (heavy tail) buys most of the tickets.
    repeat = rng.random(n) >= 0.58
    n_orders = np.where(repeat, 1 + np.ceil(rng.lognormal(1.9, 1.4, n)), 1).astype(np.int64)
    n_orders = np.minimum(n_orders, 160)
    span_total = _seconds(PLAN_END) - _seconds(PLAN_START)
    early = np.where(repeat, rng.random(n) * 0.9 / (1 + n_orders / 12), rng.random(n))
    t0 = _seconds(PLAN_START) + (early * span_total).astype(np.int64)
    keeps_going = rng.random(n) >= 0.3
    tlast = np.where(repeat & keeps_going, _seconds(PLAN_END),
                     t0 + ((_seconds(PLAN_END) - t0) * rng.random(n)).astype(np.int64))
    tlast = np.where(repeat, tlast, t0)

    favourite = _pick(rng, cat.group_weight, n)
    pref_channel = _pick(rng, CHANNEL_P, n)
    base_party = 1 + _pick(rng, PARTY_P, n)
    promo_taste = rng.beta(0.7, 3.3, n)

    # Orders, each planned for a date between the spectator's first and last outing.
    total = int(n_orders.sum())
    spec = np.repeat(np.arange(n), n_orders)
    starts = np.cumsum(n_orders) - n_orders
    position = np.arange(total) - np.repeat(starts, n_orders)
    frac = rng.random(total)
    frac[position == 0] = 0.0
    plan = t0[spec] + (frac * (tlast - t0)[spec]).astype(np.int64)

    group = favourite[spec].copy()
    r = rng.random(total)
    same = (position > 0) & (r >= P_FAVOURITE) & (r < P_FAVOURITE + P_SAME_DISCIPLINE)
    cross = (position > 0) & (r >= P_FAVOURITE + P_SAME_DISCIPLINE)
    fav_disc = cat.group_disc[group]
    for d in np.unique(cat.group_disc):
        members = np.flatnonzero(cat.group_disc == d)
        mask = same & (fav_disc == d)
        group[mask] = members[_pick(rng, cat.group_weight[members], int(mask.sum()))]
    group[cross] = _pick(rng, cat.group_weight, int(cross.sum()))

    show = _choose_shows(rng, cat, group, plan)
    show_start = cat.show_start[show]

    channel = np.where(rng.random(total) < 0.75, pref_channel[spec], _pick(rng, CHANNEL_P, total))
    party = np.where(rng.random(total) < 0.8, base_party[spec], 1 + _pick(rng, PARTY_P, total))
    u = rng.random(total)
    circumstance = np.where(u < promo_taste[spec], 1, 0)
    u2 = rng.random(total)
    circumstance = np.where(u2 < 0.02, 2, np.where(u2 < 0.03, 3, circumstance))
    channel = np.where(circumstance == 2, 1, channel)
    party = np.where(circumstance == 2, np.minimum(party, 2), party)
    party = np.where(circumstance == 3, rng.integers(6, 16, total), party)

    # Lead time: log-normal, median about three weeks; a third of box-office sales on the day.
    lead = np.minimum(rng.lognormal(np.log(20), 1.05, total), 270) * DAY
    same_day = (channel == 1) & (rng.random(total) < 0.35)
    lead = np.where(same_day, 0, lead).astype(np.int64)
    day = (show_start - lead) // DAY * DAY
    purchased = day + _hours(rng, channel)
    # The phone line is closed on Sundays: those calls come in on the Saturday.
    weekday = ((purchased // DAY) + 2) % 7   # EPOCH (2020-01-01) was a Wednesday; 0 = Monday
    purchased = np.where((channel == 2) & (weekday == 6), purchased - DAY, purchased)
    too_late = purchased > show_start - 900
    purchased = np.where(too_late, show_start - rng.integers(900, 3 * HOUR, total), purchased)
    # Nothing is recorded after the end of sales: later plans were bought in the weeks before.
    end = _seconds(SALES_END)
    late = purchased >= end
    purchased = np.where(late, end - rng.integers(1, 22, total) * DAY + purchased % DAY, purchased)

    tier = np.array([0.75, 1.0, 1.35])[_pick(rng, np.array([0.3, 0.5, 0.2]), total)]
    unit = np.rint(cat.show_price[show] * tier / 50) * 50
    promo_kind = _pick(rng, np.array([0.55, 0.25, 0.20]), total)
    factor = np.where(circumstance == 1, np.array([k[1] for k in PROMO_KINDS])[promo_kind],
                      np.where(circumstance == 3, 0.85, 1.0))
    factor = np.where(circumstance == 2, 0.0, factor)
    amount = np.rint(unit * party * factor).astype(np.int64)
    org = cat.group_org[group]
    promo = np.where(circumstance == 1, cat.promo_codes[org, promo_kind, cat.show_season[show]], None)
    order = np.arange(total)

    # Some orders take a second show of the same organisation and discipline, later on.
    extra = (circumstance != 2) & (rng.random(total) < 0.08)
    e = np.flatnonzero(extra)
    e_show = _choose_shows(rng, cat, group[e], show_start[e] + rng.integers(7, 60, len(e)) * DAY)
    ok = cat.show_start[e_show] > show_start[e]
    e, e_show = e[ok], e_show[ok]
    e_amount = np.rint(np.rint(cat.show_price[e_show] * tier[e] / 50) * 50 * party[e] * factor[e]).astype(np.int64)

    # Subscriptions: a third of the loyal buy a series of their favourite organisation's season.
    fav_org = cat.group_org[favourite]
    subscriber = (n_orders >= 4) & (rng.random(n) < 0.33)
    sub_spec, sub_season = [], []
    for s, season_start in enumerate(SEASON_STARTS):
        sale = _seconds(season_start) - 60 * DAY
        has = cat.orgseason_offsets[fav_org * len(SEASON_STARTS) + s + 1] \
            - cat.orgseason_offsets[fav_org * len(SEASON_STARTS) + s]
        take = subscriber & (has >= 3) & (t0 - 90 * DAY <= sale) & (sale <= tlast) & (rng.random(n) < 0.8)
        sub_spec.append(np.flatnonzero(take))
        sub_season.append(np.full(int(take.sum()), s))
    sub_spec = np.concatenate(sub_spec)
    sub_season = np.concatenate(sub_season)
    sub_org = fav_org[sub_spec]
    os_index = sub_org * len(SEASON_STARTS) + sub_season
    p_lo = cat.orgseason_offsets[os_index]
    p_count = cat.orgseason_offsets[os_index + 1] - p_lo
    k = np.minimum(rng.integers(3, 9, len(sub_spec)), p_count)
    sub_day = np.array([_seconds(SEASON_STARTS[s]) for s in range(len(SEASON_STARTS))])[sub_season] \
        - rng.integers(7, 150, len(sub_spec)) * DAY
    sub_channel = _pick(rng, np.array([0.5, 0.2, 0.3]), len(sub_spec))
    sub_time = sub_day + _hours(rng, sub_channel)
    sub_party = np.minimum(base_party[sub_spec], 2)
    # Distinct productions spread over the season (stratified), one performance of each.
    sub_row_order = np.repeat(np.arange(len(sub_spec)), k)
    j = np.arange(len(sub_row_order)) - np.repeat(np.cumsum(k) - k, k)
    kk = k[sub_row_order]
    prod = p_lo[sub_row_order] + ((j + rng.random(len(j))) / kk * p_count[sub_row_order]).astype(np.int64)
    perf_lo = cat.prod_offsets[prod]
    perf_n = cat.prod_offsets[prod + 1] - perf_lo
    sub_show = cat.prod_shows[perf_lo + (rng.random(len(j)) * perf_n).astype(np.int64)]
    sub_amount = np.rint(np.rint(cat.show_price[sub_show] / 50) * 50 * sub_party[sub_row_order]
                         * SUBSCRIPTION_DISCOUNT).astype(np.int64)

    n_single, n_extra, n_sub = total, len(e), len(sub_row_order)
    tx = {
        "spec": np.concatenate([spec, spec[e], sub_spec[sub_row_order]]),
        "org": np.concatenate([org, org[e], sub_org[sub_row_order]]),
        "show": np.concatenate([show, e_show, sub_show]),
        "purchased": np.concatenate([purchased, purchased[e], sub_time[sub_row_order]]),
        "amount": np.concatenate([amount, e_amount, sub_amount]),
        "tickets": np.concatenate([party, party[e], sub_party[sub_row_order]]),
        "circumstance": np.concatenate([circumstance, circumstance[e], np.zeros(n_sub, np.int64)]),
        "subscription": np.concatenate([np.zeros(n_single + n_extra, bool), np.ones(n_sub, bool)]),
        "channel": np.concatenate([channel, channel[e], sub_channel[sub_row_order]]),
        "promo": np.concatenate([promo, promo[e], np.full(n_sub, None, dtype=object)]),
        "order": np.concatenate([order, order[e], total + sub_row_order]),
    }
    # Chronological within each spectator; orders numbered in that order.
    sort = np.lexsort((tx["show"], tx["order"], tx["purchased"], tx["spec"]))
    tx = {name: values[sort] for name, values in tx.items()}
    first_of_order = np.concatenate([[True], tx["order"][1:] != tx["order"][:-1]])
    tx["order"] = np.cumsum(first_of_order) - 1

    people = _people(rng, n, first_number)

    # Contacts: one per (spectator, organisation), with consents derived as the importer does.
    n_orgs = len(ORGANISATIONS)
    pair = tx["spec"] * n_orgs + tx["org"]
    by_pair = np.argsort(pair, kind="stable")
    pair_sorted = pair[by_pair]
    first = np.concatenate([[True], pair_sorted[1:] != pair_sorted[:-1]])
    starts_idx = np.flatnonzero(first)
    contact_pair = pair_sorted[starts_idx]
    p_purchased = tx["purchased"][by_pair]
    first_purchase = np.minimum.reduceat(p_purchased, starts_idx)
    last_purchase = np.maximum.reduceat(p_purchased, starts_idx)
    rows_at_org = np.diff(np.concatenate([starts_idx, [len(pair_sorted)]]))
    is_sub = tx["subscription"][by_pair]
    big = np.iinfo(np.int64).max
    sub_first = np.minimum.reduceat(np.where(is_sub, p_purchased, big), starts_idx)
    sub_last_show = np.maximum.reduceat(np.where(is_sub, cat.show_start[tx["show"][by_pair]], -big), starts_idx)
    n_contacts = len(contact_pair)
    newsletter = rng.random(n_contacts) < np.where(rows_at_org >= 3, 0.5, 0.3)
    # A few unsubscribe through one of their organisations: that organisation's consents are
    # withdrawn and the spectator is opted out district-wide, as an unsubscribe import does.
    contact_spec = contact_pair // n_orgs
    spec_lo = np.searchsorted(contact_spec, np.arange(n), "left")
    spec_hi = np.searchsorted(contact_spec, np.arange(n), "right")
    unsubscribed = np.flatnonzero(rng.random(n) < 0.02)
    via = spec_lo[unsubscribed] + (rng.random(len(unsubscribed)) * (spec_hi - spec_lo)[unsubscribed]).astype(np.int64)
    opted_out_at = np.full(n, -1, np.int64)
    opted_out_at[unsubscribed] = first_purchase[via] + ((end - first_purchase[via])
                                                        * rng.random(len(via))).astype(np.int64)
    withdrawn_at = np.full(n_contacts, -1, np.int64)
    withdrawn_at[via] = opted_out_at[unsubscribed]

    contacts = {"spec": contact_spec, "org": contact_pair % n_orgs}
    # consent rows: implied_purchase for all, express for newsletter, implied_subscription for subscribers
    has_sub = sub_first != big
    c_contact = np.concatenate([np.arange(n_contacts), np.flatnonzero(newsletter), np.flatnonzero(has_sub)])
    c_basis = np.concatenate([np.full(n_contacts, 1), np.full(int(newsletter.sum()), 0),
                              np.full(int(has_sub.sum()), 2)])
    c_given = np.concatenate([first_purchase, first_purchase[newsletter], sub_first[has_sub]])
    never = np.full(int(newsletter.sum()), -1)
    c_expires = np.concatenate([_plus_two_years(last_purchase), never, _plus_two_years(sub_last_show[has_sub])])
    c_withdrawn = withdrawn_at[c_contact]
    by_contact = np.lexsort((c_basis, c_contact))
    consents = {"contact": c_contact[by_contact], "basis": c_basis[by_contact], "given": c_given[by_contact],
                "expires": c_expires[by_contact], "withdrawn": c_withdrawn[by_contact]}
    return {"people": people, "tx": tx, "contacts": contacts, "consents": consents, "first_number": first_number,
            "opted_out_at": opted_out_at}


def _people(rng: np.random.Generator, n: int, first_number: int) -> dict:
    """Names, addresses and ways to reach each spectator (fictional; e-mails at example.net)."""
    english = rng.random(n) < 0.25
    mixed = rng.random(n) < 0.12   # Montreal: many a francophone with an English name, and the reverse
    fsa = _pick(rng, FSA_P, n)
    first_fr = rng.integers(len(_FR_FIRST), size=n)
    first_en = rng.integers(len(_EN_FIRST), size=n)
    last_fr = rng.integers(len(_FR_LAST), size=n)
    last_en = rng.integers(len(_EN_LAST), size=n)
    last_english = english ^ mixed
    digits = rng.integers(0, 10, size=(n, 2))
    letters = _LDU_LETTERS[rng.integers(len(_LDU_LETTERS), size=n)]
    civic = rng.integers(10, 9900, size=n)
    street = rng.integers(0, 100, size=n)
    region = _FSA_REGION[fsa]
    has_address = rng.random(n) < 0.82
    has_phone = rng.random(n) < 0.7
    has_email = rng.random(n) >= 0.04
    phone_tail = rng.integers(0, 100, size=n)
    area_choice = rng.random(n) < 0.5

    first_names, last_names, emails, postals, phones, addresses, fsas, languages = [], [], [], [], [], [], [], []
    for i in range(n):
        en = bool(english[i])
        first = _EN_FIRST[first_en[i]] if en else _FR_FIRST[first_fr[i]]
        first_a = _EN_FIRST_A[first_en[i]] if en else _FR_FIRST_A[first_fr[i]]
        if last_english[i]:
            last, last_a = _EN_LAST[last_en[i]], _EN_LAST_A[last_en[i]]
        else:
            last, last_a = _FR_LAST[last_fr[i]], _FR_LAST_A[last_fr[i]]
        code = FSAS[fsa[i]]
        postal = f"{code}{digits[i, 0]}{letters[i]}{digits[i, 1]}"
        reg = region[i]
        if reg == 0:
            area = "514" if area_choice[i] else "438"
        elif reg in (1, 2):
            area = "450" if area_choice[i] else "579"
        else:
            area = _FARTHER_AREA[code]
        streets = _STREETS[reg]
        first_names.append(first)
        last_names.append(last)
        emails.append(f"{first_a}.{last_a}.{first_number + i}@example.net" if has_email[i] else None)
        postals.append(postal)
        phones.append(f"{area} 555-01{phone_tail[i]:02d}" if has_phone[i] or not has_email[i] else None)
        addresses.append(f"{civic[i]}, {streets[street[i] % len(streets)]}" if has_address[i] else None)
        fsas.append(code)
        languages.append("en" if en else "fr")
    return {"first": first_names, "last": last_names, "email": emails, "postal": postals, "phone": phones,
            "address": addresses, "fsa": fsas, "language": languages}


def _keys(people: dict, secret: str, seen_name_keys: set, first_number: int) -> list[str]:
    """Each spectator's pseudonymous key, exactly as an import of the same person computes it.

    A spectator without an e-mail is keyed on name and postal code; should two of those coincide,
    the later one is given an e-mail so that every demo spectator is a distinct person.
    """
    keys = []
    for i in range(len(people["first"])):
        basis = identity_basis(people["email"][i], people["last"][i], people["first"][i],
                               people["postal"][i], people["phone"][i])
        if basis is not None and not basis.startswith("e:"):
            if basis in seen_name_keys:
                people["email"][i] = (f"{_ascii_slug(people['first'][i])}.{_ascii_slug(people['last'][i])}"
                                      f".{first_number + i}@example.net")
                basis = identity_basis(people["email"][i], None, None, None, None)
            else:
                seen_name_keys.add(basis)
        keys.append(spectator_key(secret, basis))
    return keys


# --- bulk loading ----------------------------------------------------------------------------


_DAY_TEXT: dict[str, np.ndarray] = {}
_TIME_TEXT = np.array([f"{h:02d}:{m:02d}:{x:02d}" for h in range(24) for m in range(60) for x in range(60)],
                      dtype="S8").view(np.uint8).reshape(-1, 8)
_FIRST_DAY = np.datetime64("2015-01-01")
_LAST_DAY = np.datetime64("2035-12-31")


def _timestamps(seconds: np.ndarray) -> list:
    """Timestamp text with microseconds, as SQLAlchemy stores it on SQLite and PostgreSQL's COPY
    reads it; -1 → NULL.

    Built from two small tables of day and time-of-day text: far faster than formatting each value.
    """
    n = len(seconds)
    if n == 0:
        return []
    width = 27
    if not _DAY_TEXT:
        days = np.arange(_FIRST_DAY, _LAST_DAY + 1)
        _DAY_TEXT["day"] = np.array([f"{d} " for d in days.astype(str)], dtype="S11").view(np.uint8).reshape(-1, 11)
    clipped = np.maximum(seconds, 0)
    day_index = clipped // DAY + int((EPOCH.astype("datetime64[D]") - _FIRST_DAY).astype(np.int64))
    buf = np.empty((n, width), np.uint8)
    buf[:, :11] = _DAY_TEXT["day"][day_index]
    buf[:, 11:19] = _TIME_TEXT[clipped % DAY]
    buf[:, 19:26] = np.frombuffer(b".000000", np.uint8)
    buf[:, -1] = ord("\n")
    values = buf.tobytes().decode("ascii").split("\n")
    values.pop()
    if np.any(seconds < 0):
        for i in np.flatnonzero(seconds < 0).tolist():
            values[i] = None
    return values


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> list[str]:
    """``prefix`` followed by each number zero-padded to ``width`` digits, built in one pass."""
    n = len(numbers)
    if n == 0:
        return []
    head = len(prefix)
    buf = np.empty((n, head + width + 1), np.uint8)
    buf[:, :head] = np.frombuffer(prefix.encode("ascii"), np.uint8)
    rest = numbers.astype(np.int64)
    for k in range(width):
        buf[:, head + width - 1 - k] = 48 + rest % 10
        rest = rest // 10
    buf[:, -1] = ord("\n")
    values = buf.tobytes().decode("ascii").split("\n")
    values.pop()
    return values


class _Loader:
    """Writes rows with explicit ids through the driver (``core.sql.copy_rows``)."""

    def __init__(self, connection):
        self.connection = connection

    def write(self, table: str, columns: list[str], n: int, make: Callable[[slice], list[list]]) -> None:
        """Write ``n`` rows; ``make(slice)`` returns the column lists of that slice of rows."""
        for lo in range(0, n, WRITE_BATCH):
            values = make(slice(lo, min(lo + WRITE_BATCH, n)))
            sql.copy_rows(self.connection, table, columns, zip(*values))

    def defer_constraints(self, tables: list[str]) -> list[str]:
        """Drop the secondary indexes of the empty ``tables`` for the load (on PostgreSQL also their
        foreign keys and unique constraints) and return the statements that restore them.

        Foreign-key triggers fire row by row and cut COPY to a fraction of its speed, and an index
        on a column loaded in random order (purchase time) spills SQLite's cache at every insert;
        building each index and validating each constraint once at the end is several times faster.
        """
        drops, restores = [], []
        for table in tables:
            if self.connection.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")')).scalar():
                continue
            dropping, restoring = sql.droppable_indexes(self.connection, table)
            drops += dropping
            restores += restoring
        for statement in drops:
            self.connection.exec_driver_sql(statement)
        return restores

    def restore_constraints(self, statements: list[str]) -> None:
        for statement in statements:
            self.connection.exec_driver_sql(statement)

    def next_id(self, table: str) -> int:
        return int(self.connection.execute(text(f'SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"')).scalar())

    def reset_sequences(self, tables: list[str]) -> None:
        sql.reset_id_sequences(self.connection, tables)


# --- the command's entry point ---------------------------------------------------------------


def demo_logins() -> list[tuple[str, str, str | None]]:
    """(role, e-mail, organisation slug) of every demo login."""
    logins = [("admin", f"admin@{DEMO_DOMAIN}", None), ("staff", f"staff@{DEMO_DOMAIN}", None),
              ("evaluator", f"evaluator@{DEMO_DOMAIN}", None)]
    logins += [("venue", f"venue-{slug}@{DEMO_DOMAIN}", slug) for slug in VENUE_LOGINS]
    return logins


def _ensure_users(db) -> list[tuple[str, str]]:
    from core.auth import create_user

    made = []
    with db.session() as session:
        orgs = {o.slug: o.id for o in session.scalars(select(Organisation))}
        for role, email, slug in demo_logins():
            if slug is not None and slug not in orgs:
                continue
            if session.scalar(select(User.id).where(func.lower(User.email) == email)) is None:
                create_user(session, email, DEMO_PASSWORD, role, orgs.get(slug) if slug else None,
                            name=f"Démo {role}" if slug is None else f"Démo {slug}")
            made.append((role, email))
        session.commit()
    return made


def empty_database(db) -> None:
    """Delete every row of every table of the application (children first)."""
    from core.db import Base
    from core.migrate import load_all_models

    load_all_models()
    tables = list(reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as connection:
        sql.empty_tables(connection, tables)


def build_demo(db, spectators: int = 50_000, seed: int = 2017, echo: Callable[[str], None] = print,
               *, fresh: bool = False, secret: str | None = None) -> dict:
    """Build the demo district in ``db`` and return its logins.

    :param db: the :class:`core.db.Database` to fill (already migrated).
    :param spectators: how many spectators (about ten order lines each on average).
    :param seed: the same seed gives the same district, row for row.
    :param echo: where progress lines go.
    :param fresh: empty every table first; without it an existing district is kept as it is.
    :param secret: the district secret keying spectators (default: the application's).
    :returns: ``{"password": str, "users": [(role, email), ...]}``.
    """
    if secret is None:
        from flask import current_app

        secret = current_app.config["DISTRICT_SECRET"]
    if fresh:
        echo("Emptying the database...")
        empty_database(db)
    with db.session() as session:
        existing = session.scalar(select(func.count()).select_from(Organisation))
    if existing:
        echo(f"The database already holds {existing} organisations: the demo district is kept as it is "
             "(use --fresh to rebuild it).")
        return {"password": DEMO_PASSWORD, "users": _ensure_users(db)}

    began = time.perf_counter()
    totals = _load(db, spectators, seed, secret, echo, began)
    users = _ensure_users(db)
    from core import FEATURES

    for name in FEATURES:
        module = importlib.import_module(name)
        step = getattr(module, "build_demo", None)
        if step is not None:
            step(db, rng_seed=seed, echo=echo)
    echo(f"Demo district ready: {len(ORGANISATIONS)} organisations, {totals['shows']:,} shows, "
         f"{totals['spectators']:,} spectators, {totals['transactions']:,} transactions, "
         f"{totals['contacts']:,} contacts ({time.perf_counter() - began:.1f} s).")
    return {"password": DEMO_PASSWORD, "users": users}


def _load(db, spectators: int, seed: int, secret: str, echo, began: float) -> dict:
    cat = build_catalogue(seed)
    now = utcnow().replace(microsecond=0)
    now_s = int((np.datetime64(now, "s") - EPOCH).astype(np.int64))
    totals = {"shows": len(cat.show_start), "spectators": 0, "transactions": 0, "contacts": 0, "consents": 0}
    with db.engine.begin() as connection:
        loader = _Loader(connection)
        sql.bulk_load_settings(connection)
        tables = ["organisation", "venue", "show", "spectator", "transaction", "contact", "consent"]
        ids = {t: loader.next_id(t) for t in tables}
        restores = loader.defer_constraints(["spectator", "transaction", "contact", "consent"])
        n_orgs = len(ORGANISATIONS)
        org_ids = np.arange(n_orgs) + ids["organisation"]
        stamp = _timestamps(np.array([now_s]))[0]
        loader.write("organisation", ["id", "slug", "name", "kind", "disciplines", "k_threshold", "created_at"],
                     n_orgs, lambda sl: [org_ids[sl].tolist(), [o.slug for o in ORGANISATIONS[sl]],
                                         [o.name for o in ORGANISATIONS[sl]], [o.kind for o in ORGANISATIONS[sl]],
                                         [",".join(d for d, _ in o.programme) for o in ORGANISATIONS[sl]],
                                         [None] * len(ORGANISATIONS[sl]), [stamp] * len(ORGANISATIONS[sl])])
        venue_ids = np.arange(len(cat.venue_name)) + ids["venue"]
        loader.write("venue", ["id", "organisation_id", "name", "capacity"], len(venue_ids),
                     lambda sl: [venue_ids[sl].tolist(), org_ids[cat.venue_org[sl]].tolist(),
                                 cat.venue_name[sl], cat.venue_capacity[sl].tolist()])
        show_ids = np.arange(len(cat.show_start)) + ids["show"]
        disc = np.array(DISCIPLINES, dtype=object)
        loader.write("show", ["id", "organisation_id", "venue_id", "natural_key", "title", "company", "discipline",
                              "starts_at", "duration_minutes"], len(show_ids),
                     lambda sl: [show_ids[sl].tolist(), org_ids[cat.show_org[sl]].tolist(),
                                 venue_ids[cat.show_venue[sl]].tolist(), cat.show_key[sl], cat.show_title[sl],
                                 cat.show_company[sl], disc[cat.show_disc[sl]].tolist(),
                                 _timestamps(cat.show_start[sl]), cat.show_duration[sl].tolist()])
        echo(f"{n_orgs} organisations, {len(venue_ids)} halls, {len(show_ids):,} shows.")

        seen_name_keys: set = set()
        for chunk, lo in enumerate(range(0, spectators, CHUNK_SPECTATORS)):
            n = min(CHUNK_SPECTATORS, spectators - lo)
            data = generate_chunk(cat, seed, chunk, n, lo + 1)
            _write_chunk(loader, data, cat, ids, org_ids, show_ids, secret, seen_name_keys, stamp)
            totals["spectators"] += n
            totals["transactions"] += len(data["tx"]["spec"])
            totals["contacts"] += len(data["contacts"]["spec"])
            totals["consents"] += len(data["consents"]["contact"])
            echo(f"  {totals['spectators']:,}/{spectators:,} spectators, {totals['transactions']:,} transactions, "
                 f"{totals['contacts']:,} contacts ({time.perf_counter() - began:.1f} s)")
        if restores:
            echo("Building indexes and checking constraints...")
            loader.restore_constraints(restores)
        loader.reset_sequences(tables)
        # fresh statistics, so that the first queries on the district are planned well
        sql.refresh_statistics(connection, tables)
        connection.execute(insert(AuditEvent).values(
            at=now, actor="cli", action="demo.build", object_type="district",
            details={"seed": seed, "spectators": spectators, "transactions": totals["transactions"]}))
        sql.end_bulk_load(connection)
    return totals


def _write_chunk(loader: _Loader, data: dict, cat: Catalogue, ids: dict, org_ids: np.ndarray,
                 show_ids: np.ndarray, secret: str, seen_name_keys: set, stamp: str) -> None:
    people, tx, contacts, consents = data["people"], data["tx"], data["contacts"], data["consents"]
    n = len(people["first"])
    keys = _keys(people, secret, seen_name_keys, data["first_number"])
    spec_ids = np.arange(n) + ids["spectator"]
    loader.write("spectator", ["id", "key", "fsa", "created_at", "opted_out_at"], n,
                 lambda sl: [spec_ids[sl].tolist(), keys[sl], people["fsa"][sl], [stamp] * len(keys[sl]),
                             _timestamps(data["opted_out_at"][sl])])

    n_tx = len(tx["spec"])
    tx_ids = np.arange(n_tx) + ids["transaction"]
    order_numbers = tx["order"] + ids["transaction"]
    channels = CHANNELS
    loader.write(
        "transaction",
        ["id", "organisation_id", "spectator_id", "show_id", "purchased_at", "amount_cents", "tickets",
         "circumstance", "category", "channel", "promo_code", "order_id", "external_id"],
        n_tx,
        lambda sl: [tx_ids[sl].tolist(), org_ids[tx["org"][sl]].tolist(), spec_ids[tx["spec"][sl]].tolist(),
                    show_ids[tx["show"][sl]].tolist(), _timestamps(tx["purchased"][sl]),
                    tx["amount"][sl].tolist(), tx["tickets"][sl].tolist(),
                    CIRCUMSTANCE[tx["circumstance"][sl]].tolist(),
                    np.where(tx["subscription"][sl], "subscription", "single").tolist(),
                    channels[tx["channel"][sl]].tolist(), tx["promo"][sl].tolist(),
                    _numbered("C", order_numbers[sl], 10), _numbered("demo-", tx_ids[sl], 10)])

    n_contacts = len(contacts["spec"])
    contact_ids = np.arange(n_contacts) + ids["contact"]
    who = contacts["spec"]

    def contact_columns(sl):
        people_idx = who[sl].tolist()
        return [contact_ids[sl].tolist(), org_ids[contacts["org"][sl]].tolist(), spec_ids[who[sl]].tolist(),
                [people["last"][i] for i in people_idx], [people["first"][i] for i in people_idx],
                [people["address"][i] for i in people_idx], [people["postal"][i] for i in people_idx],
                [people["email"][i] for i in people_idx], [people["phone"][i] for i in people_idx],
                [people["language"][i] for i in people_idx], _numbered("", contact_ids[sl], 8),
                [stamp] * len(people_idx)]

    loader.write("contact", ["id", "organisation_id", "spectator_id", "last_name", "first_name", "address",
                             "postal_code", "email", "phone", "language", "customer_id", "updated_at"],
                 n_contacts, contact_columns)

    n_consents = len(consents["contact"])
    consent_ids = np.arange(n_consents) + ids["consent"]
    bases = np.array(["express", "implied_purchase", "implied_subscription"], dtype=object)
    loader.write("consent", ["id", "contact_id", "channel", "basis", "source", "given_at", "expires_at",
                             "withdrawn_at"], n_consents,
                 lambda sl: [consent_ids[sl].tolist(), contact_ids[consents["contact"][sl]].tolist(),
                             ["email"] * len(consent_ids[sl]), bases[consents["basis"][sl]].tolist(),
                             ["demo"] * len(consent_ids[sl]), _timestamps(consents["given"][sl]),
                             _timestamps(consents["expires"][sl]),
                             _timestamps(consents["withdrawn"][sl])])
    for table, count in (("spectator", n), ("transaction", n_tx), ("contact", n_contacts), ("consent", n_consents)):
        ids[table] += count
