"""Surnames, given names and streets with a realistic German/European frequency shape.

Why a frequency list and a long tail: the "same last name" signal is noisy because a handful of names
(Müller, Schmidt, Schneider, ...) cover a large share of people. German surname statistics put Müller at
~0.9% of the population, the top 10 at ~4.5% and the top 100 at ~12-15%; the rest is a long tail of rare
names. The head below is the published top-60 ranking with weights roughly proportional to its counts; the
tail is made of composed names, each rare. With COMMON_SHARE below, Müller comes out at ~1.7% of patients:
twice the German figure, on purpose (a meaner test of the surname signal).
"""

from __future__ import annotations

import random

#: (surname, relative weight ~ people per 10,000) for the most common German surnames, plus a few from
#: neighbouring countries (Turkish, Polish, Italian, Greek names are common in German cities).
COMMON_SURNAMES: list[tuple[str, float]] = [
    ("Müller", 90), ("Schmidt", 55), ("Schneider", 31), ("Fischer", 30), ("Weber", 27), ("Meyer", 27),
    ("Wagner", 25), ("Becker", 23), ("Schulz", 23), ("Hoffmann", 22), ("Schäfer", 18), ("Koch", 17),
    ("Bauer", 17), ("Richter", 16), ("Klein", 16), ("Wolf", 15), ("Schröder", 14), ("Neumann", 14),
    ("Schwarz", 14), ("Zimmermann", 13), ("Braun", 13), ("Krüger", 12), ("Hofmann", 12), ("Hartmann", 12),
    ("Lange", 11), ("Schmitt", 11), ("Werner", 11), ("Schmitz", 11), ("Krause", 11), ("Meier", 11),
    ("Lehmann", 10), ("Schmid", 10), ("Schulze", 10), ("Maier", 10), ("Köhler", 9), ("Herrmann", 9),
    ("König", 9), ("Walter", 9), ("Mayer", 9), ("Huber", 9), ("Kaiser", 8), ("Fuchs", 8), ("Peters", 8),
    ("Lang", 8), ("Scholz", 8), ("Möller", 8), ("Weiß", 8), ("Jung", 8), ("Hahn", 8), ("Schubert", 7),
    ("Yılmaz", 7), ("Kaya", 5), ("Nowak", 5), ("Kowalski", 4), ("Rossi", 3), ("Papadopoulos", 3),
    ("Vogel", 7), ("Friedrich", 7), ("Keller", 7), ("Günther", 7),
]
#: share of people carrying one of COMMON_SURNAMES (the rest draw from the long tail)
COMMON_SHARE = 0.15

_TAIL_START = ["Ah", "Bal", "Bre", "Dor", "Eck", "Fal", "Gan", "Hel", "Ilg", "Jan", "Kas", "Lind", "Mar",
               "Nol", "Ort", "Pfl", "Quer", "Ros", "Stau", "Tre", "Ul", "Vos", "Wen", "Zell", "Brink", "Har",
               "Kessel", "Ost", "Sieb", "Wald"]
_TAIL_END = ["mann", "er", "ing", "ke", "ner", "holz", "berg", "bach", "hoff", "stedt", "ler", "inger",
             "reuther", "wald", "meier", "brink", "kamp", "horst", "feld", "ow", "ski", "ić", "sen", "ides"]
TAIL_SURNAMES = sorted({a + b for a in _TAIL_START for b in _TAIL_END})

GIVEN_NAMES = ["Anna", "Lukas", "Marie", "Jonas", "Sophie", "Felix", "Laura", "Paul", "Lea", "Max", "Julia",
               "Tim", "Lena", "Jan", "Sarah", "Niklas", "Hannah", "David", "Emma", "Tobias", "Mia", "Elias",
               "Katharina", "Florian", "Zeynep", "Mehmet", "Agnieszka", "Piotr", "Giulia", "Marco", "Eleni"]

STREETS = ["Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße", "Bergstraße",
           "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße", "Am Park", "Wiesenweg", "Birkenweg",
           "Rosenstraße", "Mühlenweg", "Goethestraße", "Schillerstraße", "Friedhofstraße", "Jahnstraße",
           "Kastanienallee", "Eichendorffweg", "Tulpenweg", "Mozartstraße", "Feldstraße"]
POSTCODES = [f"{10115 + 2 * i}" for i in range(60)]


class NamePool:
    """Draws surnames with the head/tail shape above, from one seeded random source."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.head = [n for n, _ in COMMON_SURNAMES]
        self.weights = [w for _, w in COMMON_SURNAMES]

    def surname(self) -> str:
        if self.rng.random() < COMMON_SHARE:
            return self.rng.choices(self.head, self.weights)[0]
        # the tail is Zipf-like too, but flat enough that each name stays rare
        return TAIL_SURNAMES[min(int(self.rng.paretovariate(0.6)) - 1, len(TAIL_SURNAMES) - 1)
                             if self.rng.random() < 0.3 else self.rng.randrange(len(TAIL_SURNAMES))]

    def rare_surname(self, taken: set[str]) -> str:
        """A name nobody else in the hospital carries (for injected family snooping on a rare name)."""
        while True:
            name = self.rng.choice(_TAIL_START) + self.rng.choice(_TAIL_END) + self.rng.choice(
                ["", "-" + self.rng.choice(_TAIL_START) + "er"])
            if name not in taken and name not in TAIL_SURNAMES:
                return name

    def given(self) -> str:
        return self.rng.choice(GIVEN_NAMES)

    def address(self) -> tuple[str, str]:
        return f"{self.rng.choice(STREETS)} {self.rng.randint(1, 140)}", self.rng.choice(POSTCODES)
