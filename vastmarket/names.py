"""GPU model names and locations, normalised so that users and Vast agree.

Users write ``RTX3060``, ``RTX 3060``, ``rtx-3060``, ``A4000``, ``GTX1080Ti``; Vast spells
``RTX 3060``, ``RTX A4000``, ``GTX 1080 Ti``. Both sides go through :func:`gpu_key`, which maps
them onto one compact upper-case key (``RTX3060``, ``A4000``, ``GTX1080TI``).

Vast's ``geolocation`` is free text set by the host whose last two characters are an ISO-2
country code (``"California, US"``, ``"Tokyo, JP"``); :func:`parse_geolocation` turns it into a
:class:`Location` (country, US state, region). Location *patterns* written by users (``US-CA``,
``US``, ``EU``, ``ASIA``, ``DE``, ``EU-DE``) are parsed by :func:`parse_location_pattern` and
matched with :meth:`LocationPattern.matches`.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_NON_ALNUM = re.compile(r"[^A-Z0-9]+")

# Prefixes Vast puts in front of model names that users usually leave out.
_DROP_PREFIXES = ("NVIDIA", "GEFORCE", "TESLA", "QUADRO")


@lru_cache(maxsize=4096)
def gpu_key(name: str) -> str:
    """Return the compact comparison key of a GPU model name.

    >>> gpu_key("RTX 3060"), gpu_key("rtx-3060"), gpu_key("RTX A4000"), gpu_key("A4000")
    ('RTX3060', 'RTX3060', 'A4000', 'A4000')
    >>> gpu_key("GTX 1080 Ti"), gpu_key("Tesla V100"), gpu_key("RTX 6000Ada")
    ('GTX1080TI', 'V100', 'RTX6000ADA')
    """
    words = [w for w in _NON_ALNUM.split(name.upper()) if w]
    while words and words[0] in _DROP_PREFIXES:
        words = words[1:]
    # Vast calls the professional Ampere cards "RTX A4000"; users say "A4000".
    if len(words) >= 2 and words[0] == "RTX" and re.fullmatch(r"A\d{4}", words[1]):
        words = words[1:]
    return "".join(words)


def gpu_matches(pattern_key: str, offer_key: str) -> bool:
    """True when an offer's GPU key satisfies a user's GPU key.

    Exact keys match; a bare data-centre family (``A100``, ``H100``, ``V100``) also matches its
    form-factor variants (``A100PCIE``, ``A100SXM4``, ``H100SXM``, ``H100NVL``...), the mapping
    gpuhunt uses. ``RTX3060`` does not match ``RTX3060TI``.
    """
    if pattern_key == offer_key:
        return True
    if pattern_key in _FAMILIES and offer_key.startswith(pattern_key):
        return offer_key[len(pattern_key):] in _FORM_FACTORS
    return False


_FAMILIES = frozenset({"A100", "H100", "H200", "A800", "H800", "V100", "L40", "A40", "A10", "B200"})
_FORM_FACTORS = frozenset({"PCIE", "SXM", "SXM4", "SXM5", "SXM2", "NVL", "80GB", "40GB", "32GB", "16GB", "S"})

_GPU_KEY_FORM = re.compile(r"^[A-Z0-9]{2,24}$")


def is_plausible_gpu_name(name: str) -> bool:
    """Whether a user-written GPU name is well-formed (letters and digits, e.g. ``RTX3060``)."""
    return bool(_GPU_KEY_FORM.match(gpu_key(name))) and any(c.isdigit() for c in gpu_key(name))


def display_gpu(name: str) -> str:
    """Compact display form used by the selection log (``RTX3060``, ``A4000``, ``GTX1080Ti``)."""
    key = gpu_key(name)
    return key.replace("TI", "Ti") if key.endswith("TI") else key


# --- locations -----------------------------------------------------------------------------

REGIONS: dict[str, frozenset[str]] = {
    "US": frozenset({"US"}),
    "NA": frozenset({"US", "CA", "MX"}),
    "EU": frozenset({
        "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR",
        "HU", "IE", "IS", "IT", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "RS", "SE",
        "SI", "SK", "UA", "MD", "AL", "BA", "ME", "MK",
    }),
    "ASIA": frozenset({
        "JP", "KR", "CN", "HK", "TW", "SG", "IN", "TH", "VN", "MY", "ID", "PH", "AE", "IL", "SA",
        "TR", "KZ", "PK", "BD", "QA",
    }),
    "SA": frozenset({"BR", "AR", "CL", "CO", "PE", "UY"}),
    "OC": frozenset({"AU", "NZ"}),
    "AF": frozenset({"ZA", "NG", "KE", "EG", "MA"}),
}
_COUNTRY_REGION: dict[str, str] = {
    cc: region for region, members in REGIONS.items() if region not in ("US", "NA") for cc in members
}
_COUNTRY_REGION.update({"US": "US", "CA": "NA", "MX": "NA"})

US_STATES: dict[str, str] = {
    "ALABAMA": "AL", "ALASKA": "AK", "ARIZONA": "AZ", "ARKANSAS": "AR", "CALIFORNIA": "CA",
    "COLORADO": "CO", "CONNECTICUT": "CT", "DELAWARE": "DE", "FLORIDA": "FL", "GEORGIA": "GA",
    "HAWAII": "HI", "IDAHO": "ID", "ILLINOIS": "IL", "INDIANA": "IN", "IOWA": "IA", "KANSAS": "KS",
    "KENTUCKY": "KY", "LOUISIANA": "LA", "MAINE": "ME", "MARYLAND": "MD", "MASSACHUSETTS": "MA",
    "MICHIGAN": "MI", "MINNESOTA": "MN", "MISSISSIPPI": "MS", "MISSOURI": "MO", "MONTANA": "MT",
    "NEBRASKA": "NE", "NEVADA": "NV", "NEW HAMPSHIRE": "NH", "NEW JERSEY": "NJ",
    "NEW MEXICO": "NM", "NEW YORK": "NY", "NORTH CAROLINA": "NC", "NORTH DAKOTA": "ND",
    "OHIO": "OH", "OKLAHOMA": "OK", "OREGON": "OR", "PENNSYLVANIA": "PA", "RHODE ISLAND": "RI",
    "SOUTH CAROLINA": "SC", "SOUTH DAKOTA": "SD", "TENNESSEE": "TN", "TEXAS": "TX", "UTAH": "UT",
    "VERMONT": "VT", "VIRGINIA": "VA", "WASHINGTON": "WA", "WEST VIRGINIA": "WV",
    "WISCONSIN": "WI", "WYOMING": "WY", "DISTRICT OF COLUMBIA": "DC",
}
_STATE_CODES = frozenset(US_STATES.values())

# Country names hosts sometimes write instead of the code ("California, United States").
_COUNTRY_NAMES: dict[str, str] = {
    "UNITED STATES": "US", "USA": "US", "UNITED STATES OF AMERICA": "US", "CANADA": "CA",
    "GERMANY": "DE", "FRANCE": "FR", "NETHERLANDS": "NL", "UNITED KINGDOM": "GB", "UK": "GB",
    "SPAIN": "ES", "ITALY": "IT", "POLAND": "PL", "SWEDEN": "SE", "NORWAY": "NO", "FINLAND": "FI",
    "JAPAN": "JP", "SOUTH KOREA": "KR", "KOREA": "KR", "SINGAPORE": "SG", "TAIWAN": "TW",
    "CHINA": "CN", "HONG KONG": "HK", "INDIA": "IN", "AUSTRALIA": "AU", "BRAZIL": "BR",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where an offer is: ISO-2 country, US state code when known, and its region."""

    country: str | None
    state: str | None = None

    @property
    def region(self) -> str | None:
        return _COUNTRY_REGION.get(self.country) if self.country else None

    @property
    def label(self) -> str:
        """Display form used by the selection log: ``US-CA``, ``US``, ``EU-DE``, ``ASIA-JP``."""
        if self.country is None:
            return "unknown"
        if self.country == "US":
            return f"US-{self.state}" if self.state else "US"
        region = self.region
        return f"{region}-{self.country}" if region and region not in ("NA",) else self.country


UNKNOWN_LOCATION = Location(None)


@lru_cache(maxsize=8192)
def parse_geolocation(text: str | None) -> Location:
    """Parse Vast's free-text ``geolocation``.

    >>> parse_geolocation("California, US").label
    'US-CA'
    >>> parse_geolocation("Yutakachō, Shinagawa District, Tokyo, JP").label
    'ASIA-JP'
    >>> parse_geolocation("California, United States").label
    'US-CA'
    >>> parse_geolocation(None).label
    'unknown'
    """
    if not text or not text.strip():
        return UNKNOWN_LOCATION
    parts = [p.strip().upper() for p in text.split(",") if p.strip()]
    if not parts:
        return UNKNOWN_LOCATION
    last = parts[-1]
    country: str | None
    if len(last) == 2 and last.isalpha():
        country = last
    else:
        country = _COUNTRY_NAMES.get(last)
    if country is None:
        return UNKNOWN_LOCATION
    state = None
    if country == "US":
        for part in reversed(parts[:-1]):
            if part in US_STATES:
                state = US_STATES[part]
                break
            if part in _STATE_CODES:
                state = part
                break
    return Location(country, state)


def geolocation_tails(countries: frozenset[str]) -> frozenset[str]:
    """The two-letter endings a ``geolocation`` text of one of ``countries`` can have, as Vast
    matches a country filter (on the last two characters): the codes themselves, and the last
    two letters of the country names hosts write instead (``"California, United States"`` ends
    in ``ES``). A search filtered on these misses no offer :func:`parse_geolocation` puts there.

    >>> sorted(geolocation_tails(frozenset({"US"})))
    ['CA', 'ES', 'SA', 'US']
    """
    tails = set(countries)
    tails.update(name[-2:] for name, code in _COUNTRY_NAMES.items() if code in countries)
    return frozenset(tails)


@dataclass(frozen=True, slots=True)
class LocationPattern:
    """A user-written location: a region (``EU``), a country (``DE``) or a US state (``US-CA``)."""

    text: str
    countries: frozenset[str]
    state: str | None = None

    def matches(self, location: Location) -> bool:
        if location.country is None or location.country not in self.countries:
            return False
        return self.state is None or location.state == self.state


class LocationSyntaxError(ValueError):
    """A location pattern that is neither a region, a country code nor ``US-<state>``."""


ACCEPTED_LOCATION_FORMS = (
    "a region (US, NA, EU, ASIA, SA, OC, AF), an ISO-2 country code (DE, JP), "
    "a US state as US-CA, or REGION-CC such as EU-DE"
)


def parse_location_pattern(text: str) -> LocationPattern:
    """Parse a location preference such as ``US-CA``, ``US``, ``EU``, ``ASIA``, ``DE``, ``EU-DE``."""
    norm = text.strip().upper().replace("_", "-").replace(" ", "")
    if norm in REGIONS:
        return LocationPattern(norm, REGIONS[norm])
    if "-" in norm:
        head, _, tail = norm.partition("-")
        if head == "US" and tail in _STATE_CODES:
            return LocationPattern(norm, frozenset({"US"}), tail)
        if head in REGIONS and tail in REGIONS[head]:
            return LocationPattern(norm, frozenset({tail}))
        raise LocationSyntaxError(f"unknown location {text!r}: expected {ACCEPTED_LOCATION_FORMS}")
    if len(norm) == 2 and norm.isalpha() and norm in _COUNTRY_REGION:
        return LocationPattern(norm, frozenset({norm}))
    raise LocationSyntaxError(f"unknown location {text!r}: expected {ACCEPTED_LOCATION_FORMS}")
