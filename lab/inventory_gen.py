"""Deterministic sample inventory of 晋城市 for the lab, in the format of docs/inventory.md.

The demo, the importer tests and the load tests need an inventory that looks like a real city
backbone (thousands of institutions, three vendors' edge routers, leased lines and VPDN) but is
reproducible byte for byte: everything comes from one ``random.Random(seed)`` consumed in a
fixed order, and the committed files under ``lab/sample/`` are this module's output.

    python -m lab.inventory_gen [--institutions N] [--seed S] [--out FILE]
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import ipaddress
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_INSTITUTIONS = 2000
DEFAULT_SEED = 1405
SMALL_INSTITUTIONS = 60

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLES = {  # committed file -> institutions (both with DEFAULT_SEED)
    "inventory.yaml": DEFAULT_INSTITUTIONS,
    "inventory-small.yaml": SMALL_INSTITUTIONS,
}

CITY_CODE = "140500"
CITY_NAME = "晋城市"
CITY_POLICY = "jincheng"
CARRIERS = ("中国电信", "中国联通", "中国移动")
VPDN_DOMAIN = "ybvpdn.sx"
LAB_ADDRESS = "127.0.0.1"
SNMP_PORT = 1161  # one snmpsim process on loopback serves every community (LAB.md)
FIRST_SSH_PORT = 10022
FIRST_VLAN = 1001
MAX_VLAN = 4094
ALLOCATION_BASE = ipaddress.IPv4Address("10.145.0.0")
MIN_COUNTY_BLOCK = 19  # each county gets at least a /19 of 10.145.0.0/16
AGREEMENT_YEAR = 2026

# Share of each institution category; pharmacies take the rest (~65 %). Clinics (诊所, 卫生院,
# 社区卫生服务中心) are medical institutions with H codes, so their kind is ``hospital``.
CATEGORY_SHARES = {"hospital": 0.15, "clinic": 0.12, "ltc": 0.05, "applicant": 0.03}
CATEGORY_KIND = {
    "hospital": "hospital",
    "clinic": "hospital",
    "ltc": "ltc",
    "applicant": "applicant",
    "pharmacy": "pharmacy",
}
# Probability that the primary link is a leased line (the rest use VPDN).
LEASED_SHARE = {"hospital": 0.95, "clinic": 0.75, "ltc": 0.8, "applicant": 0.6, "pharmacy": 0.06}
# Probability of a VPDN backup next to a leased primary (protected hospitals get a second line).
BACKUP_SHARE = {"hospital": 0.1, "clinic": 0.03, "ltc": 0.05, "applicant": 0.0, "pharmacy": 0.3}
LEASED_CARRIER_WEIGHTS = (0.45, 0.25, 0.30)
VPDN_CARRIER_WEIGHTS = (0.35, 0.20, 0.45)
SUSPENDED_SHARE = 0.02
DOWN_SHARE = 0.015

SUBINTERFACE_PARENT = {
    "huawei": "GigabitEthernet0/0/1",
    "hp_comware": "GigabitEthernet1/0/1",
    "cisco_ios": "GigabitEthernet0/1",
}
UPLINKS = {
    "huawei": ["GigabitEthernet0/0/0"],
    "hp_comware": ["GigabitEthernet1/0/2"],
    "cisco_ios": ["GigabitEthernet0/0"],
}
V3_DEVICE = "jc-lingchuan-edge-01"


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words: keeps the long name lists compact and diff-friendly."""
    return tuple(text.split())


@dataclass(frozen=True)
class CountyInfo:
    """A county with what the generator needs to name its institutions and build its edge."""

    code: str
    name: str
    pinyin: str  # device names
    prefix: str  # how private institutions' names start (城区 businesses say 晋城市)
    official: str  # how public ones start (城区's say 晋城市城区)
    weight: float  # share of the city's institutions
    routers: tuple[str, ...]  # netmiko device types of its edge routers
    public_hospitals: tuple[tuple[str, bool], ...]  # (name, protected), largest first
    towns: tuple[str, ...]  # 乡镇 / 街道
    streets: tuple[str, ...]


COUNTIES: tuple[CountyInfo, ...] = (
    CountyInfo(
        code="140502",
        name="城区",
        pinyin="chengqu",
        prefix="晋城市",
        official="晋城市城区",
        weight=0.20,
        routers=("huawei", "hp_comware"),
        public_hospitals=(
            ("晋城市人民医院", True),
            ("晋城大医院", True),
            ("晋城市第二人民医院", True),
            ("晋城市中医院", True),
            ("晋城市妇幼保健院", False),
            ("晋城市第三人民医院", False),
            ("晋城市城区人民医院", False),
            ("晋城市肿瘤医院", False),
            ("晋城市精神卫生中心", False),
        ),
        towns=_words("东街街道 西街街道 南街街道 北街街道 矿区街道 钟家庄街道 西上庄街道 北石店镇"),
        streets=_words("""
            泽州路 凤台街 黄华街 红星街 文昌街 书院街 太行路 兰花路 中原街 景西路 白马寺 凤鸣
        """),
    ),
    CountyInfo(
        code="140521",
        name="沁水县",
        pinyin="qinshui",
        prefix="沁水县",
        official="沁水县",
        weight=0.09,
        routers=("cisco_ios",),
        public_hospitals=(
            ("沁水县人民医院", True),
            ("沁水县中医院", False),
            ("沁水县妇幼保健院", False),
        ),
        towns=_words("""
            龙港镇 中村镇 郑庄镇 端氏镇 嘉峰镇 郑村镇 柿庄镇
            土沃乡 张村乡 苏庄乡 胡底乡 固县乡 十里乡
        """),
        streets=_words("梅杏路 沁河路 建设路 新华街 滨河路 杏河"),
    ),
    CountyInfo(
        code="140522",
        name="阳城县",
        pinyin="yangcheng",
        prefix="阳城县",
        official="阳城县",
        weight=0.16,
        routers=("huawei",),
        public_hospitals=(
            ("阳城县人民医院", True),
            ("阳城县第二人民医院", False),
            ("阳城县中医院", False),
            ("阳城县妇幼保健院", False),
        ),
        towns=_words("""
            凤城镇 北留镇 润城镇 町店镇 芹池镇 次营镇 横河镇 河北镇 蟒河镇
            东冶镇 白桑乡 寺头乡 西河乡 演礼乡 固隆乡 董封乡 驾岭乡
        """),
        streets=_words("新阳路 凤栖路 南环路 东关 西关 阳泰"),
    ),
    CountyInfo(
        code="140524",
        name="陵川县",
        pinyin="lingchuan",
        prefix="陵川县",
        official="陵川县",
        weight=0.08,
        routers=("hp_comware",),
        public_hospitals=(
            ("陵川县人民医院", True),
            ("陵川县中医院", False),
            ("陵川县妇幼保健院", False),
        ),
        towns=_words("""
            崇文镇 礼义镇 附城镇 西河底镇 平城镇 杨村镇
            潞城镇 夺火乡 马圪当乡 古郊乡 六泉乡 秦家庄乡
        """),
        streets=_words("梅园路 府城路 太行路 南街 北街"),
    ),
    CountyInfo(
        code="140525",
        name="泽州县",
        pinyin="zezhou",
        prefix="泽州县",
        official="泽州县",
        weight=0.25,
        routers=("huawei", "cisco_ios"),
        public_hospitals=(
            ("泽州县人民医院", True),
            ("泽州县中医院", False),
            ("泽州县妇幼保健院", False),
        ),
        towns=_words("""
            南村镇 下村镇 大东沟镇 周村镇 犁川镇 晋庙铺镇 金村镇 高都镇 巴公镇
            大阳镇 山河镇 李寨乡 柳树口镇 北义城镇 南岭乡 川底乡 大箕镇
        """),
        streets=_words("丹河路 迎宾街 金匠 巴公 东四义 南村"),
    ),
    CountyInfo(
        code="140581",
        name="高平市",
        pinyin="gaoping",
        prefix="高平市",
        official="高平市",
        weight=0.22,
        routers=("hp_comware", "huawei"),
        public_hospitals=(
            ("高平市人民医院", True),
            ("高平市中医院", False),
            ("高平市妇幼保健院", False),
            ("高平市第二人民医院", False),
        ),
        towns=_words("""
            米山镇 三甲镇 神农镇 陈区镇 北诗镇 河西镇 马村镇 野川镇
            寺庄镇 建宁乡 石末乡 原村乡 永录乡 东城街道 南城街道 北城街道
        """),
        streets=_words("长平路 炎帝路 建设路 友谊街 康乐街 泫氏街 团池 西关"),
    ),
)

BRANDS = _words("""
    仁爱 博爱 同济 和平 康华 华康 瑞康 仁和 济民 益民 安康 康宁 惠民 福康 康泰 永康
    健民 协和 长城 太行 丹河 沁河 天泰 华泰 明仁 德仁 众康 仁济 爱心 弘德 泰和 佑安
""")
HOSPITAL_TYPES = _words("""
    医院 医院 骨科医院 眼科医院 口腔医院 中西医结合医院
    康复医院 妇产医院 肛肠医院 皮肤病医院 男科医院 耳鼻喉医院
""")
PHARMACY_CHAINS = _words("""
    康宁 百姓 仁和堂 益康 万民 济民 福寿堂 安康 众康 德济堂
    太行 晋康 惠民 寿仁堂 天和 广济 德顺 长生堂 瑞祥 利民
""")
SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董程曹袁邓许傅沈曾彭吕苏"
    "卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾"
    "侯邵孟段常武乔"
)
GIVEN_NAMES = _words("""
    建华 建国 国强 志强 文明 海燕 秀英 丽娟 晓东 红霞 永刚 学军 俊杰 春生 玉梅 爱民
    卫东 宏伟 新民 振华 桂兰 淑珍 凤英 德明 金山 保平 小平 晋生 太平 明亮 素芳 红梅
""")
LTC_TYPES = _words("护理院 医养结合中心 康养中心 老年护理中心 颐养院")

Record = dict[str, Any]
_NAME_TRIES = 40  # random draws before falling back to numbered names


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` by ``weights`` with the largest-remainder method (sums exactly)."""
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _category_counts(institutions: int) -> dict[str, int]:
    counts = {cat: round(institutions * share) for cat, share in CATEGORY_SHARES.items()}
    counts["pharmacy"] = institutions - sum(counts.values())
    if counts["pharmacy"] < 0:
        raise ValueError(f"institutions must be at least 1, got {institutions}")
    return counts


def _short(place: str) -> str:
    """米山镇 -> 米山, 东街街道 -> 东街: the form branch names use."""
    for suffix in ("街道", "镇", "乡"):
        if place.endswith(suffix) and len(place) > len(suffix) + 1:
            return place[: -len(suffix)]
    return place


class _Namer:
    """Draws realistic institution names; every name is unique across the city."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.fallbacks: dict[str, int] = {}

    def _unique(self, draw: Any, fallback: str) -> str:
        for _ in range(_NAME_TRIES):
            name = draw()
            if name not in self.used:
                self.used.add(name)
                return str(name)
        while True:  # the county's name space is exhausted (very large N): number them
            self.fallbacks[fallback] = self.fallbacks.get(fallback, 1) + 1
            name = f"{fallback}第{self.fallbacks[fallback]}分部"
            if name not in self.used:
                self.used.add(name)
                return name

    def person(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES)

    def hospital(self, c: CountyInfo) -> str:
        rng = self.rng

        def draw() -> str:
            if rng.random() < 0.25:
                return f"{c.prefix}{_short(rng.choice(c.towns))}{rng.choice(BRANDS)}医院"
            return f"{c.prefix}{rng.choice(BRANDS)}{rng.choice(HOSPITAL_TYPES)}"

        return self._unique(draw, f"{c.prefix}{BRANDS[0]}医院")

    def clinic(self, c: CountyInfo) -> str:
        rng = self.rng

        def draw() -> str:
            r = rng.random()
            town = rng.choice(c.towns)
            if r < 0.25:
                if town.endswith("街道"):
                    return f"{c.official}{town}社区卫生服务中心"
                return f"{c.official}{town}{rng.choice(('卫生院', '中心卫生院'))}"
            if r < 0.35:
                return f"{c.prefix}{_short(rng.choice(c.streets))}社区卫生服务站"
            if r < 0.75:
                return f"{c.prefix}{self.person()}{rng.choice(('诊所', '中医诊所', '西医诊所'))}"
            if r < 0.9:
                return f"{c.prefix}{rng.choice(BRANDS)}{rng.choice(('口腔诊所', '门诊部'))}"
            return f"{c.prefix}{_short(town)}{rng.choice(SURNAMES)}氏中医诊所"

        return self._unique(draw, f"{c.prefix}{BRANDS[0]}门诊部")

    def pharmacy(self, c: CountyInfo) -> str:
        rng = self.rng

        def draw() -> str:
            r = rng.random()
            chain = rng.choice(PHARMACY_CHAINS)
            if r < 0.15:
                return f"{c.prefix}{chain}大药房"
            if r < 0.85:
                branch = _short(rng.choice(c.towns + c.streets)).removesuffix("店")
                return f"{c.prefix}{chain}大药房{branch}店"
            if r < 0.95:
                return f"{c.prefix}{self.person()}药店"
            return f"{c.prefix}{_short(rng.choice(c.towns))}{rng.choice(BRANDS)}药店"

        return self._unique(draw, f"{c.prefix}{PHARMACY_CHAINS[0]}大药房")

    def ltc(self, c: CountyInfo) -> str:
        rng = self.rng

        def draw() -> str:
            if rng.random() < 0.3:
                return f"{c.official}{rng.choice(c.towns)}养老服务中心"
            return f"{c.prefix}{rng.choice(BRANDS)}{rng.choice(LTC_TYPES)}"

        return self._unique(draw, f"{c.prefix}{BRANDS[0]}护理院")

    def applicant(self, c: CountyInfo) -> str:
        rng = self.rng

        def draw() -> str:
            r = rng.random()
            if r < 0.5:
                return f"{c.prefix}{rng.choice(BRANDS)}{rng.choice(('门诊部', '综合门诊部'))}"
            if r < 0.8:
                return f"{c.prefix}{self.person()}诊所"
            return f"{c.prefix}{rng.choice(BRANDS)}{rng.choice(HOSPITAL_TYPES)}"

        return self._unique(draw, f"{c.prefix}{BRANDS[0]}综合门诊部")


@dataclass
class _Inst:
    """An institution while it is being built (its code comes once its county is complete)."""

    county: CountyInfo
    category: str
    name: str
    protected: bool
    code: str = ""


def _agreement(rng: random.Random) -> tuple[dt.date, dt.date]:
    """A one-year service agreement starting on the first of a month in AGREEMENT_YEAR."""
    month = rng.randint(1, 12)
    start = dt.date(AGREEMENT_YEAR, month, 1)
    end_year, end_month = (AGREEMENT_YEAR, 12) if month == 1 else (AGREEMENT_YEAR + 1, month - 1)
    end = dt.date(end_year, end_month, calendar.monthrange(end_year, end_month)[1])
    return start, end


def _devices() -> tuple[list[Record], dict[str, list[str]]]:
    """Edge routers per county, the city core firewall and the LNS; returns the device records
    and each county code's edge router names."""
    devices: list[Record] = []
    edges: dict[str, list[str]] = {}
    port = FIRST_SSH_PORT

    def add(name: str, device_type: str, role: str, county: str, uplinks: list[str]) -> None:
        nonlocal port
        snmp: Record
        if name == V3_DEVICE:
            snmp = {
                "version": "v3",
                "port": SNMP_PORT,
                "user": "ew-v3",
                "auth_protocol": "sha",
                "auth_key": f"auth-{name}",
                "priv_protocol": "aes",
                "priv_key": f"priv-{name}",
            }
        else:
            snmp = {"version": "v2c", "port": SNMP_PORT, "community": name}
        ssh: Record = {"username": "ewlab", "password": f"pw-{name}"}
        if device_type == "cisco_ios":
            ssh["secret"] = f"en-{name}"
        devices.append(
            {
                "name": name,
                "mgmt_address": LAB_ADDRESS,
                "ssh_port": port,
                "device_type": device_type,
                "role": role,
                "county": county,
                "snmp": snmp,
                "ssh": ssh,
                "uplink_interfaces": uplinks,
            }
        )
        port += 1

    for c in COUNTIES:
        for i, device_type in enumerate(c.routers, start=1):
            name = f"jc-{c.pinyin}-edge-{i:02d}"
            add(name, device_type, "edge_router", c.code, list(UPLINKS[device_type]))
            edges.setdefault(c.code, []).append(name)
    fw_uplinks = ["GigabitEthernet0/0/0", "GigabitEthernet0/0/1"]
    add("jc-core-fw-01", "huawei", "firewall", CITY_CODE, fw_uplinks)
    add("jc-lns-01", "huawei", "lns", CITY_CODE, ["GigabitEthernet0/0/0"])
    return devices, edges


def _build_institutions(institutions: int, rng: random.Random) -> list[_Inst]:
    """Name and code every institution, county by county; the result is sorted by code."""
    namer = _Namer(rng)
    weights = [c.weight for c in COUNTIES]
    per_county = {cat: _allocate(n, weights) for cat, n in _category_counts(institutions).items()}
    out: list[_Inst] = []
    for ci, c in enumerate(COUNTIES):
        public = [
            _Inst(c, "hospital", name, prot)
            for name, prot in c.public_hospitals[: per_county["hospital"][ci]]
        ]
        namer.used.update(i.name for i in public)
        h_rest: list[_Inst] = []
        for _ in range(per_county["hospital"][ci] - len(public)):
            h_rest.append(_Inst(c, "hospital", namer.hospital(c), False))
        for _ in range(per_county["clinic"][ci]):
            h_rest.append(_Inst(c, "clinic", namer.clinic(c), False))
        for _ in range(per_county["ltc"][ci]):
            h_rest.append(_Inst(c, "ltc", namer.ltc(c), False))
        for _ in range(per_county["applicant"][ci]):
            h_rest.append(_Inst(c, "applicant", namer.applicant(c), False))
        rng.shuffle(h_rest)
        pharmacies = [
            _Inst(c, "pharmacy", namer.pharmacy(c), False)
            for _ in range(per_county["pharmacy"][ci])
        ]
        for serial, inst in enumerate(public + h_rest, start=1):
            inst.code = f"H{c.code}{serial:05d}"
        for serial, inst in enumerate(pharmacies, start=1):
            inst.code = f"P{c.code}{serial:05d}"
        out.extend(public + h_rest + pharmacies)
    out.sort(key=lambda i: i.code)
    return out


def _allocations(insts: list[_Inst]) -> list[Record]:
    """One /28 (hospitals) or /29 per institution from a per-county block of 10.145.0.0/16
    (spilling past it only for very large N): /28s first, then /29s, so nothing is wasted and
    nothing overlaps."""
    length = {i.code: 28 if i.category == "hospital" else 29 for i in insts}
    need = {
        c.code: sum(2 ** (32 - length[i.code]) for i in insts if i.county is c) for c in COUNTIES
    }
    block_size = 2 ** (32 - MIN_COUNTY_BLOCK)
    while block_size < max(need.values()):
        block_size *= 2
    prefixes: dict[str, str] = {}
    for ci, c in enumerate(COUNTIES):
        cursor = int(ALLOCATION_BASE) + ci * block_size
        for plen in (28, 29):
            for inst in insts:
                if inst.county is c and length[inst.code] == plen:
                    prefixes[inst.code] = f"{ipaddress.IPv4Address(cursor)}/{plen}"
                    cursor += 2 ** (32 - plen)
    return [{"institution": i.code, "prefix": prefixes[i.code]} for i in insts]


def generate(institutions: int = DEFAULT_INSTITUTIONS, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The sample inventory as the YAML structure of docs/inventory.md (plain dicts/lists)."""
    if institutions < 1:
        raise ValueError(f"institutions must be at least 1, got {institutions}")
    rng = random.Random(seed)
    counties: list[Record] = [
        {"code": CITY_CODE, "name": CITY_NAME, "parent": None, "policy": CITY_POLICY}
    ]
    counties += [{"code": c.code, "name": c.name, "parent": CITY_CODE} for c in COUNTIES]
    devices, edges = _devices()
    kinds = {d["name"]: d["device_type"] for d in devices}
    lns = "jc-lns-01"

    insts = _build_institutions(institutions, rng)
    inst_records: list[Record] = []
    links: list[Record] = []
    next_vlan = {name: FIRST_VLAN for name in kinds}

    def leased(inst: _Inst, carrier: str, device: str, state: str) -> Record:
        vlan = next_vlan[device]
        if vlan > MAX_VLAN:
            raise ValueError(f"{device} has no VLAN left for {inst.code}: too many institutions")
        next_vlan[device] = vlan + 1
        interface = f"{SUBINTERFACE_PARENT[kinds[device]]}.{vlan}"
        return {
            "institution": inst.code,
            "carrier": carrier,
            "kind": "leased_line",
            "device": device,
            "interface": interface,
            "state": state,
        }

    def vpdn(inst: _Inst, carrier: str, state: str) -> Record:
        return {
            "institution": inst.code,
            "carrier": carrier,
            "kind": "vpdn",
            "device": lns,
            "vpdn_account": f"{inst.code.lower()}@{VPDN_DOMAIN}",
            "state": state,
        }

    for inst in insts:
        if inst.category == "applicant":
            status = "applicant"
        elif not inst.protected and rng.random() < SUSPENDED_SHARE:
            status = "suspended"
        else:
            status = "active"
        record: Record = {
            "code": inst.code,
            "name": inst.name,
            "kind": CATEGORY_KIND[inst.category],
            "county": inst.county.code,
            "status": status,
            "protected": inst.protected,
        }
        if status != "applicant":  # applicants have test access, not yet an agreement
            record["agreement_start"], record["agreement_end"] = _agreement(rng)
        inst_records.append(record)

        def state(status: str = status) -> str:
            if status == "suspended":  # the county cut it
                return "cut"
            return "down" if rng.random() < DOWN_SHARE else "up"

        routers = edges[inst.county.code]
        router = rng.choice(routers)
        if rng.random() < LEASED_SHARE[inst.category] or inst.protected:
            carrier = rng.choices(CARRIERS, LEASED_CARRIER_WEIGHTS)[0]
            links.append(leased(inst, carrier, router, state()))
            others = [c for c in CARRIERS if c != carrier]
            if inst.protected:  # a second line from another carrier, on the other router
                second = routers[(routers.index(router) + 1) % len(routers)]
                links.append(leased(inst, rng.choice(others), second, state()))
            elif rng.random() < BACKUP_SHARE[inst.category]:
                links.append(vpdn(inst, rng.choice(others), state()))
        else:
            links.append(vpdn(inst, rng.choices(CARRIERS, VPDN_CARRIER_WEIGHTS)[0], state()))

    exporters = [
        {"address": LAB_ADDRESS, "observation_domain": n, "device": d["name"], "sampling_rate": 1}
        for n, d in enumerate((d for d in devices if d["role"] in ("edge_router", "lns")), 1)
    ]
    vendor_in, vendor_out = "山西康联医疗信息技术有限公司", "北京华医云软件股份有限公司"
    return {
        "counties": counties,
        "carriers": [{"name": name} for name in CARRIERS],
        "devices": devices,
        "institutions": inst_records,
        "links": links,
        "ip_allocations": _allocations(insts),
        "backbone_prefixes": [
            {"prefix": "10.0.0.0/8", "description": "医保骨干网"},
            {"prefix": "172.16.0.0/16", "description": "山西省医疗保障信息平台"},
            {"prefix": "172.20.0.0/16", "description": "国家医疗保障信息平台"},
        ],
        "exporters": exporters,
        "vendors": [
            {"name": vendor_in, "registered": True, "in_province": True, "status": "active"},
            {"name": vendor_out, "registered": True, "in_province": False, "status": "active"},
        ],
        "vendor_servers": [
            {"vendor": vendor, "address": address, "location": location, "description": what}
            for vendor, address, location, what in (
                (vendor_in, "10.140.9.10", "太原", "HIS前置机"),
                (vendor_in, "10.140.9.11", "太原", "医保结算接口服务器"),
                (vendor_out, "10.11.20.15", "北京", "HIS接口服务器"),
                (vendor_out, "10.11.20.16", "北京", "远程运维跳板机"),
            )
        ],
    }


# Sections whose items are written one per line, like docs/inventory.md; the others in block
# style (institutions read better that way; devices keep snmp/ssh/uplinks on one line each).
_BLOCK_SECTIONS = {"institutions"}


def dump_yaml(data: dict[str, Any], header: str = "") -> str:
    """YAML text of ``data``: stable (pure-Python SafeDumper, no line wrapping, keys in order)."""
    parts = [header]
    for section, items in data.items():
        parts.append(
            yaml.dump(
                {section: items},
                Dumper=yaml.SafeDumper,
                allow_unicode=True,
                sort_keys=False,
                default_flow_style=False if section in _BLOCK_SECTIONS else None,
                width=10_000,
            )
        )
    return "".join(parts)


def render(institutions: int = DEFAULT_INSTITUTIONS, seed: int = DEFAULT_SEED) -> str:
    """The whole file, with a header that says how to regenerate it."""
    header = (
        "# Sample inventory of 晋城市 for the lab (format: docs/inventory.md). Generated, do not\n"
        f"# edit: python -m lab.inventory_gen --institutions {institutions} --seed {seed}\n"
    )
    return dump_yaml(generate(institutions, seed), header)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.inventory_gen", description=__doc__)
    parser.add_argument("--institutions", type=int, default=DEFAULT_INSTITUTIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    try:
        text = render(args.institutions, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
