"""The demo mall: stores over four floors and several categories, and its API clients."""

from __future__ import annotations

from dataclasses import dataclass

from gateway import signing
from gateway.api.requests.mall import parse_approval, parse_guide, parse_new_client
from gateway.demo.backend import BackendCredentials
from gateway.repo import tenants as tenants_repo
from gateway.repo.tenants import Tenant
from gateway.services import onboarding, receivers

FLOORS = ("B1", "1F", "2F", "3F")
# (category, typical ticket range in fen, store names)
CATALOG = (
    ("food", (1_500, 12_000), ("Noodle Bar", "Dim Sum House", "Hotpot Garden", "Bakery Lane", "Tea Terrace")),
    ("coffee", (1_800, 6_000), ("Bean There", "Morning Roast", "Latte Lab")),
    ("fashion", (19_900, 159_900), ("Linen & Co", "Urban Threads", "Denim Works", "Silk Road Boutique")),
    ("sports", (29_900, 99_900), ("Run Club", "Peak Outdoor", "Court Side")),
    ("beauty", (9_900, 69_900), ("Glow Studio", "Petal Cosmetics", "Pure Skin")),
    ("kids", (4_900, 39_900), ("Toy Harbor", "Little Steps", "Story Books")),
    ("electronics", (29_900, 899_900), ("Pixel Point", "Sound Cube", "Gadget Garage")),
)


# Contracts by category: (commission bps, guide reward bps). Stores with guides split.
CONTRACTS = {"fashion": (500, 200), "sports": (400, 200), "beauty": (600, 300), "electronics": (300, 100),
             "food": (800, 0), "coffee": (800, 0), "kids": (500, 0)}
FRANCHISE_INDEX = 18  # Pixel Point: a franchise electronics store
FRANCHISE_RATIO_BPS = 6000
BRAND_HQ_SHARE_BPS = 4500
BRAND_HQ_MCHID = "1900090001"


@dataclass(frozen=True)
class DemoStore:
    sub_mchid: str
    name: str
    floor: str
    category: str
    ticket_fen: tuple[int, int]
    franchise: bool = False

    @property
    def guide_id(self) -> str | None:
        return f"G{self.sub_mchid[-4:]}" if CONTRACTS[self.category][1] else None

    @property
    def guide_openid(self) -> str:
        return f"oDemoGuide{self.sub_mchid[-4:]}"


def demo_stores(count: int) -> list[DemoStore]:
    stores: list[DemoStore] = []
    names = [(category, ticket, name) for category, ticket, names in CATALOG for name in names]
    for index in range(count):
        category, ticket, name = names[index % len(names)]
        suffix = f" {index // len(names) + 1}" if index >= len(names) else ""
        stores.append(DemoStore(
            sub_mchid=f"19{index + 1:08d}", name=name + suffix, floor=FLOORS[index % len(FLOORS)],
            category=category, ticket_fen=ticket, franchise=index == FRANCHISE_INDEX,
        ))
    return stores


async def seed_mall(svc, stores: list[DemoStore]) -> None:
    """Stores with their contracts, a guide for each store that rewards guides, and one
    franchise store whose brand headquarters takes a high ratio, approved."""
    settings, pool = svc.settings, svc.pool
    await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
    for store in stores:
        async with pool.acquire() as conn:
            if await tenants_repo.tenant(conn, settings.sp_mchid, store.sub_mchid) is not None:
                continue  # an earlier run on the same database onboarded it
        commission, reward = CONTRACTS[store.category]
        await onboarding.create_tenant(svc, Tenant(
            mall_id=settings.sp_mchid, sub_mchid=store.sub_mchid, name=store.name, floor=store.floor,
            category=store.category, sub_appid=None,
            contract=onboarding.contract_of(commission_bps=commission, guide_reward_bps=reward),
        ))
        if store.guide_id:
            await receivers.register_guide(svc, settings.sp_mchid, parse_guide({
                "guide_id": store.guide_id, "sub_mchid": store.sub_mchid, "openid": store.guide_openid,
                "name": f"Guide of {store.name}"}))
        if store.franchise:
            await receivers.approve_high_ratio(svc, settings.sp_mchid, store.sub_mchid, parse_approval({
                "approved_by": "mall finance director", "max_ratio_bps": FRANCHISE_RATIO_BPS,
                "reason": "franchise contract: brand headquarters takes 45% of each sale"}))
            await receivers.add_receiver(svc, settings.sp_mchid, store.sub_mchid, "MERCHANT_ID", BRAND_HQ_MCHID,
                                         "Pixel Point Brand HQ Co., Ltd.", "HEADQUARTER")


async def backend_credentials(svc, identity, role: str, name: str) -> BackendCredentials:
    key = signing.generate_private_key()
    client = parse_new_client({"role": role, "name": name,
                               "public_key": signing.public_key_pem(key.public_key()).decode()})
    created = await onboarding.create_client(svc, svc.settings.sp_mchid, client)
    return BackendCredentials(created.client_id, created.serial_no, key, created.apiv3_key.reveal(),
                              identity.private_key.public_key())
