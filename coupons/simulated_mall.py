"""Simulated malls to develop and test targeting against: stores on floors, shoppers in
segments with favourite stores, trips at hours that suit them, complements (cinema then
dinner), routines, repeat visits and shoppers who arrive later.

Three layouts, structurally different on purpose so the model is not tuned to one:

- `destination`: a big mall of themed floors (food on top, cinema, fashion in the middle),
  weekend trips of several purchases chained by hand-written complements;
- `community`: a neighbourhood mall of mixed floors where shoppers keep routines (coffee
  then lunch on weekdays, the supermarket then the bakery), short trips, strong repeats;
- `random`: categories, complements, hours, floors and segments all drawn from the seed;
- `outlet`: kept apart to check the model on a mall it was not developed on (its numbers
  were never used to choose anything): brand stores along the promenades of three wings,
  where shoppers walk to a store near the last one rather than to a category's complement,
  half of them tourists who come once, regulars whose favourite brands drift, and stores
  opening and closing during the history.

Pure: everything random comes from `numpy.random.default_rng(seed)`, nothing reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from coupons.targeting import Payment, Store

CHINA = timezone(timedelta(hours=8))
PROFILES = ("destination", "community", "random", "outlet")
CATEGORIES = ("restaurant", "fast_food", "cafe", "dessert", "cinema", "ktv", "fashion", "shoes",
              "sports", "kids", "beauty", "electronics", "supermarket", "books", "jewelry", "home")
# Hours at which each category sells (peaks as (hour, width)); used by hand-written layouts.
_PEAKS = {
    "restaurant": ((12, 1.2), (18.5, 1.5)), "fast_food": ((12, 1.5), (17.5, 2.5)),
    "cafe": ((9.5, 1.5), (15, 2)), "dessert": ((15, 2), (20, 1.5)), "cinema": ((14, 2), (19.5, 1.5)),
    "ktv": ((21, 1.5),), "fashion": ((15, 3.5),), "shoes": ((15.5, 3.5),), "sports": ((16, 3),),
    "kids": ((11, 2), (15.5, 2)), "beauty": ((15, 3),), "electronics": ((15, 3.5),),
    "supermarket": ((10, 1.5), (18, 1.5)), "books": ((14, 3),), "jewelry": ((16, 3),), "home": ((14, 3),),
}
# Minutes a purchase of the category takes before the next one can happen.
_DURATION_MIN = {"restaurant": 70, "cinema": 150, "ktv": 120, "kids": 60, "supermarket": 40}
_COMPLEMENTS = {
    "cinema": {"restaurant": 6, "dessert": 3, "fast_food": 2, "ktv": 1},
    "restaurant": {"dessert": 3, "cinema": 3, "fashion": 2, "cafe": 1, "ktv": 1},
    "fast_food": {"cinema": 2, "fashion": 2, "kids": 1, "sports": 1},
    "cafe": {"fashion": 3, "books": 2, "beauty": 2, "shoes": 1},
    "dessert": {"fashion": 2, "cinema": 2, "beauty": 1},
    "fashion": {"shoes": 4, "beauty": 2, "jewelry": 1, "cafe": 2, "restaurant": 1},
    "shoes": {"sports": 2, "fashion": 2, "dessert": 1, "cafe": 1},
    "sports": {"shoes": 3, "fast_food": 1},
    "kids": {"fast_food": 3, "dessert": 3, "supermarket": 2, "restaurant": 1},
    "beauty": {"fashion": 2, "jewelry": 2, "cafe": 2},
    "electronics": {"home": 2, "cafe": 1, "restaurant": 1, "books": 1},
    "supermarket": {"home": 1, "dessert": 2, "fast_food": 1},
    "books": {"cafe": 3, "kids": 1},
    "jewelry": {"restaurant": 2, "beauty": 1},
    "ktv": {"fast_food": 1},
    "home": {"electronics": 1, "restaurant": 1},
}
_PRICE_FEN = {"restaurant": 18000, "fast_food": 4000, "cafe": 3500, "dessert": 3000, "cinema": 9000,
              "ktv": 25000, "fashion": 45000, "shoes": 60000, "sports": 40000, "kids": 20000,
              "beauty": 30000, "electronics": 150000, "supermarket": 15000, "books": 8000,
              "jewelry": 300000, "home": 20000}


@dataclass(frozen=True)
class Segment:
    name: str
    share: float
    likes: dict            # category -> weight
    hours: tuple           # (peak hour, width) of trip starts
    visits_per_30d: float
    weekend_boost: float
    stay: float            # chance of another purchase after one
    loyalty: float         # chance to buy at the favourite store of a category
    routine: float         # chance a trip is the shopper's routine


@dataclass(frozen=True)
class Layout:
    categories: tuple
    floors: tuple
    stores_per_floor: dict  # floor -> categories of its stores
    hour_weights: np.ndarray  # category x 24
    complements: np.ndarray   # category x category
    durations_min: tuple
    prices_fen: tuple
    segments: tuple
    floor_locality: float     # how much shoppers prefer staying on a floor


def simulate(profile: str, *, seed: int, shoppers: int = 1500, days: int = 150,
             start_on: datetime = datetime(2026, 6, 1, tzinfo=CHINA),
             new_shopper_share: float = 0.3) -> tuple[list[Store], list[Payment]]:
    """Stores and payments (time order) of a simulated mall."""
    assert profile in PROFILES, profile
    rng = np.random.default_rng(seed)
    if profile == "outlet":
        return _outlet(rng, seed, shoppers, days, start_on, new_shopper_share)
    layout = _LAYOUTS[profile](rng)
    stores, store_category, store_floor, appeal = _stores(layout, rng)
    payments = []
    for number in range(shoppers):
        openid = f"o{seed:03d}{profile[:3]}{number:06d}"
        first_day = int(rng.integers(0, days)) if rng.random() < new_shopper_share else 0
        payments += _shopper(openid, layout, rng, store_category, store_floor, appeal,
                             start_on, first_day, days, stores)
    payments.sort(key=lambda p: (p.paid_at, p.openid))
    return stores, payments


def _stores(layout: Layout, rng):
    stores, store_category, store_floor = [], [], []
    for floor in layout.floors:
        for category in layout.stores_per_floor[floor]:
            number = len(stores)
            stores.append(Store(sub_mchid=f"19{number + 1:08d}", name=f"{layout.categories[category]} {number}",
                                floor=floor, category=layout.categories[category]))
            store_category.append(category)
            store_floor.append(layout.floors.index(floor))
    appeal = rng.lognormal(0.0, 0.8, len(stores))
    return stores, np.array(store_category), np.array(store_floor), appeal


def _shopper(openid, layout, rng, store_category, store_floor, appeal, start_on, first_day, days, stores):
    segment = layout.segments[rng.choice(len(layout.segments), p=[s.share for s in layout.segments])]
    n_categories = len(layout.categories)
    likes = np.array([segment.likes.get(c, 0.05) for c in range(n_categories)], dtype=float)
    likes = likes * rng.gamma(2.0, 0.5, n_categories) * np.isin(np.arange(n_categories), store_category)
    favourite = {c: _pick(rng, appeal * (store_category == c)) for c in range(n_categories)
                 if (store_category == c).any()}
    routine = _routine(layout, rng, likes, favourite)
    rate_per_day = segment.visits_per_30d * rng.gamma(2.0, 0.5) / 30.0
    payments = []
    for day in range(first_day, days):
        date = start_on + timedelta(days=day)
        weekend = date.weekday() >= 5
        if rng.random() >= rate_per_day * (segment.weekend_boost if weekend else 1.0):
            continue
        hour = float(np.clip(rng.normal(*segment.hours), 8.0, 21.5))
        at = date + timedelta(hours=hour)
        if routine and rng.random() < segment.routine:
            trip = list(routine)
        else:
            trip = _trip(layout, rng, segment, likes, favourite, appeal, store_category, store_floor, hour)
        for store in trip:
            amount = int(layout.prices_fen[store_category[store]] * rng.lognormal(0.0, 0.4))
            payments.append(Payment(openid=openid, sub_mchid=stores[store].sub_mchid, paid_at=at,
                                    amount_fen=max(amount, 100)))
            at += timedelta(minutes=layout.durations_min[store_category[store]] * rng.uniform(0.5, 1.5) + 5)
    return payments


def _routine(layout, rng, likes, favourite):
    """Two or three favourite stores the shopper often visits in this order."""
    length = int(rng.integers(2, 4))
    categories = rng.choice(len(likes), size=min(length, len(favourite)), replace=False, p=likes / likes.sum())
    return [favourite[c] for c in categories if c in favourite]


def _trip(layout, rng, segment, likes, favourite, appeal, store_category, store_floor, hour):
    trip, category, floor = [], None, None
    while len(trip) < 6 and hour < 22.5:
        hour_index = min(int(hour), 23)
        weights = likes * layout.hour_weights[:, hour_index]
        if category is not None:
            weights = weights * layout.complements[category]
        if weights.sum() <= 0:
            break
        category = int(rng.choice(len(weights), p=weights / weights.sum()))
        if category in favourite and rng.random() < segment.loyalty:
            store = favourite[category]
        else:
            near = np.ones(len(appeal)) if floor is None else np.exp(
                -layout.floor_locality * np.abs(store_floor - floor))
            store = _pick(rng, appeal * near * (store_category == category))
        trip.append(store)
        floor = store_floor[store]
        hour += (layout.durations_min[category] + 10) / 60.0
        if rng.random() >= segment.stay * (0.8 ** (len(trip) - 1)):
            break
    return trip


def _pick(rng, weights) -> int:
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _hour_weights(peaks_by_category) -> np.ndarray:
    hours = np.arange(24) + 0.5
    rows = [sum(np.exp(-0.5 * ((hours - h) / w) ** 2) for h, w in peaks) + 0.02 for peaks in peaks_by_category]
    return np.array(rows)


def _named_complements(self_weight: float) -> np.ndarray:
    n = len(CATEGORIES)
    matrix = np.full((n, n), 0.15)
    for source, targets in _COMPLEMENTS.items():
        for target, weight in targets.items():
            matrix[CATEGORIES.index(source), CATEGORIES.index(target)] = weight
    np.fill_diagonal(matrix, self_weight)
    return matrix


def _likes(**weights) -> dict:
    return {CATEGORIES.index(name): weight for name, weight in weights.items()}


def _destination(rng) -> Layout:
    themed = {
        "B1": ("supermarket", "fast_food", "fast_food", "dessert", "cafe", "home", "fast_food"),
        "1F": ("jewelry", "beauty", "beauty", "cafe", "fashion", "jewelry", "shoes"),
        "2F": ("fashion", "fashion", "fashion", "shoes", "shoes", "fashion", "beauty", "cafe"),
        "3F": ("sports", "sports", "shoes", "kids", "kids", "books", "electronics", "electronics"),
        "4F": ("restaurant", "restaurant", "restaurant", "restaurant", "dessert", "cafe", "fast_food"),
        "5F": ("cinema", "ktv", "restaurant", "restaurant", "dessert", "fast_food"),
    }
    segments = (
        Segment("family", 0.3, _likes(kids=4, fast_food=3, restaurant=3, supermarket=2, dessert=2, cinema=1),
                (13, 3), 3.0, 2.5, 0.7, 0.5, 0.05),
        Segment("young", 0.3, _likes(cinema=4, restaurant=3, dessert=3, fashion=3, ktv=2, cafe=2, shoes=2),
                (16, 3), 2.5, 2.0, 0.7, 0.4, 0.05),
        Segment("fashion", 0.2, _likes(fashion=5, shoes=4, beauty=3, jewelry=2, cafe=2),
                (15, 2.5), 2.0, 1.8, 0.6, 0.5, 0.05),
        Segment("diner", 0.2, _likes(restaurant=5, fast_food=3, cafe=2, dessert=2, electronics=1, books=1),
                (17, 2.5), 3.0, 1.5, 0.5, 0.7, 0.1),
    )
    return Layout(CATEGORIES, tuple(themed), {f: tuple(CATEGORIES.index(c) for c in cs * 3) for f, cs in themed.items()},
                  _hour_weights([_PEAKS[c] for c in CATEGORIES]), _named_complements(0.1),
                  tuple(_DURATION_MIN.get(c, 25) for c in CATEGORIES),
                  tuple(_PRICE_FEN[c] for c in CATEGORIES), segments, 0.8)


def _community(rng) -> Layout:
    floors = ("B1", "1F", "2F", "3F")
    mix = ("supermarket", "supermarket", "fast_food", "fast_food", "fast_food", "cafe", "cafe", "dessert",
           "restaurant", "restaurant", "kids", "kids", "fashion", "shoes", "beauty", "books", "home",
           "electronics", "sports", "cinema")
    mix = mix * 3
    order = rng.permutation(len(mix))
    per_floor = {f: tuple(CATEGORIES.index(mix[i]) for i in order[j::len(floors)]) for j, f in enumerate(floors)}
    segments = (
        Segment("office", 0.35, _likes(cafe=5, fast_food=5, restaurant=2, dessert=1, books=1),
                (11, 2.5), 10.0, 0.3, 0.5, 0.6, 0.35),
        Segment("household", 0.35, _likes(supermarket=6, home=2, dessert=2, kids=2, fast_food=1),
                (14, 4), 5.0, 1.3, 0.5, 0.55, 0.3),
        Segment("teen", 0.15, _likes(fast_food=3, dessert=4, cinema=3, sports=2, shoes=2, fashion=2),
                (17, 2), 4.0, 2.0, 0.6, 0.4, 0.15),
        Segment("senior", 0.15, _likes(supermarket=4, cafe=3, restaurant=3, beauty=1, books=2),
                (10, 1.5), 5.0, 1.0, 0.4, 0.7, 0.35),
    )
    return Layout(CATEGORIES, floors, per_floor, _hour_weights([_PEAKS[c] for c in CATEGORIES]),
                  _named_complements(0.4), tuple(_DURATION_MIN.get(c, 25) for c in CATEGORIES),
                  tuple(_PRICE_FEN[c] for c in CATEGORIES), segments, 0.3)


def _random(rng) -> Layout:
    n_categories = int(rng.integers(8, 20))
    categories = tuple(f"category_{i:02d}" for i in range(n_categories))
    n_floors = int(rng.integers(3, 8))
    floors = tuple(f"{i + 1}F" for i in range(n_floors))
    per_floor = {f: tuple(int(c) for c in rng.choice(n_categories, size=int(rng.integers(6, 30))))
                 for f in floors}
    peaks = [tuple((rng.uniform(9, 21), rng.uniform(1, 4)) for _ in range(int(rng.integers(1, 3))))
             for _ in range(n_categories)]
    complements = rng.gamma(0.3, 1.0, (n_categories, n_categories)) + 0.02
    segments = tuple(
        Segment(f"segment_{i}", 1.0, {int(c): float(rng.uniform(1, 5))
                                      for c in rng.choice(n_categories, size=4, replace=False)},
                (rng.uniform(10, 19), rng.uniform(1, 4)), rng.uniform(1.5, 10), rng.uniform(0.5, 3),
                rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.9), rng.uniform(0.0, 0.5))
        for i in range(int(rng.integers(2, 7))))
    shares = rng.dirichlet(np.ones(len(segments)))
    segments = tuple(Segment(**{**s.__dict__, "share": float(w)}) for s, w in zip(segments, shares))
    return Layout(categories, floors, per_floor, _hour_weights(peaks), complements,
                  tuple(int(rng.integers(15, 150)) for _ in categories),
                  tuple(int(rng.integers(1000, 100000)) for _ in categories), segments, float(rng.uniform(0, 1.5)))


_LAYOUTS = {"destination": _destination, "community": _community, "random": _random}

_OUTLET_CATEGORIES = {"fashion": 0.4, "shoes": 0.15, "sports": 0.15, "cafe": 0.08, "fast_food": 0.08,
                      "beauty": 0.07, "kids": 0.07}
_OUTLET_FOOD = ("cafe", "fast_food")


def _outlet(rng, seed: int, shoppers: int, days: int, start_on: datetime, new_shopper_share: float):
    """Stores and payments of the `outlet` profile (see the module's docstring)."""
    names, weights = list(_OUTLET_CATEGORIES), np.array(list(_OUTLET_CATEGORIES.values()))
    stores, category, wing, position = [], [], [], []
    for w, wing_name in enumerate(("A", "B", "C")):
        for place in range(int(rng.integers(20, 31))):
            c = names[int(rng.choice(len(names), p=weights))]
            stores.append(Store(sub_mchid=f"19{len(stores) + 1:08d}", name=f"{c} {wing_name}{place}",
                                floor=f"wing {wing_name}", category=c))
            category.append(c)
            wing.append(w)
            position.append(place)
    category, wing, position = np.array(category), np.array(wing), np.array(position, dtype=float)
    n = len(stores)
    opens = np.where(rng.random(n) < 0.15, rng.integers(30, days, n), 0)
    closes = np.where(rng.random(n) < 0.10, rng.integers(40, days + 1, n), days + 1)
    is_food = np.isin(category, _OUTLET_FOOD)
    payments = []
    for number in range(shoppers):
        openid = f"o{seed:03d}out{number:06d}"
        tourist = rng.random() < 0.45
        likes = {c: rng.gamma(2.0, 0.5) for c in names}
        affinity = rng.dirichlet(np.full(n, 0.3)) * np.array([likes[c] for c in category])
        first_day = int(rng.integers(0, days)) if tourist or rng.random() < new_shopper_share else 0
        rate = 0.0 if tourist else rng.gamma(2.0, 1.5) / 30.0
        for day in range(first_day, days):
            if not (tourist and day == first_day) and rng.random() >= rate:
                continue
            date = start_on + timedelta(days=day)
            weekend = date.weekday() >= 5
            hour = rng.uniform(11, 17) if tourist else (rng.uniform(13, 18) if weekend else rng.uniform(18, 20.5))
            at = date + timedelta(hours=float(hour))
            open_now = (opens <= day) & (day < closes)
            length = int(rng.integers(3, 9)) if tourist else int(rng.integers(1, 5))
            here, bought_since_food = None, 0
            for _ in range(length):
                if here is None:
                    near = np.exp(-np.minimum(position, position.max() - position) / 3.0)  # from an entrance
                else:
                    near = np.exp(-np.abs(position - position[here]) / 2.5) * np.where(wing == wing[here], 1.0, 0.15)
                weight = affinity * near * open_now
                if bought_since_food >= 2 and rng.random() < 0.4:
                    weight = near * open_now * is_food
                if here is not None:
                    weight[here] = 0.0
                if weight.sum() <= 0:
                    break
                here = int(rng.choice(n, p=weight / weight.sum()))
                bought_since_food = 0 if is_food[here] else bought_since_food + 1
                amount = int(_PRICE_FEN[category[here]] * rng.lognormal(0.0, 0.5))
                payments.append(Payment(openid=openid, sub_mchid=stores[here].sub_mchid, paid_at=at,
                                        amount_fen=max(amount, 100)))
                at += timedelta(minutes=float(rng.uniform(20, 50)))
            if not tourist:  # tastes drift a little after every visit
                affinity = 0.9 * affinity + 0.1 * rng.dirichlet(np.full(n, 0.3)) * np.array(
                    [likes[c] for c in category])
    payments.sort(key=lambda p: (p.paid_at, p.openid))
    return stores, payments
