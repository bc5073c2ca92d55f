"""Invented Chinese names for the demo district: people, places, roads, schools, enterprises.

Everything here is made up from common characters; any likeness to a real person or place is
chance. All functions take a ``random.Random`` so that one seed gives one district.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

# common surnames, weighted roughly by frequency (Jiangnan flavour: 顾, 陆, 沈, 钱 ...)
SURNAMES = (
    ("王", 70),
    ("张", 65),
    ("李", 60),
    ("陈", 55),
    ("徐", 40),
    ("周", 38),
    ("朱", 36),
    ("沈", 30),
    ("顾", 28),
    ("陆", 28),
    ("吴", 30),
    ("刘", 34),
    ("杨", 26),
    ("黄", 22),
    ("钱", 18),
    ("孙", 18),
    ("胡", 15),
    ("金", 14),
    ("蒋", 14),
    ("姚", 12),
    ("吕", 10),
    ("许", 12),
    ("范", 10),
    ("汤", 8),
    ("邹", 8),
    ("曹", 10),
    ("潘", 9),
    ("袁", 9),
    ("俞", 8),
    ("唐", 9),
    ("薛", 7),
    ("马", 9),
    ("高", 10),
    ("郭", 8),
    ("何", 8),
    ("宋", 7),
    ("严", 6),
    ("殷", 5),
    ("施", 6),
    ("毛", 5),
    ("季", 5),
    ("浦", 4),
    ("戴", 6),
    ("赵", 12),
    ("丁", 6),
    ("倪", 5),
    ("谢", 6),
    ("卢", 5),
    ("叶", 7),
    ("程", 5),
    ("费", 4),
    ("盛", 4),
    ("邱", 4),
    ("秦", 4),
    ("冯", 5),
    ("韩", 5),
)
_SUR_CHARS = [s for s, _ in SURNAMES]
_SUR_WEIGHTS = [w for _, w in SURNAMES]

GIVEN_MALE = (
    "伟强磊军勇杰涛斌超明辉刚健平峰鹏华林波俊宇浩然志刚建国建华国强海军文斌晓东永红卫东振宇子豪宏伟立新德明家豪俊杰"
)
GIVEN_FEMALE = "芳娟敏静丽艳娜霞燕玲秀英红梅桂兰雪琴佳怡欣悦雨婷晓燕婷婷海燕丽华美玲玉兰凤英秀珍雅琴慧敏晓丽诗涵"
# two-character given names are built from these pools; one-character ones from the strings above
GIVEN_1_MALE = "志建国振永德家俊子宏晓立文海明伟嘉"
GIVEN_2_MALE = "强军华明峰涛斌杰刚辉平勇东伟宇豪龙成林彬"
GIVEN_1_FEMALE = "秀桂玉丽晓雅慧佳美雪海婷欣梦静"
GIVEN_2_FEMALE = "英兰珍芳娟琴梅红燕霞玲婷怡悦敏萍丹"


def person_name(rng: random.Random, female: bool | None = None) -> str:
    if female is None:
        female = rng.random() < 0.5
    surname = rng.choices(_SUR_CHARS, _SUR_WEIGHTS)[0]
    if rng.random() < 0.25:
        given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    elif female:
        given = rng.choice(GIVEN_1_FEMALE) + rng.choice(GIVEN_2_FEMALE)
    else:
        given = rng.choice(GIVEN_1_MALE) + rng.choice(GIVEN_2_MALE)
    return surname + given


_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "157",
    "158",
    "159",
    "166",
    "173",
    "177",
    "180",
    "181",
    "182",
    "183",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)


def mobile_phone(rng: random.Random) -> str:
    """An 11-digit mainland mobile number (invented)."""
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident identity number."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=False))
    return _ID_CHECK[total % 11]


def id_number(rng: random.Random, region_code: str, birth: date, female: bool) -> str:
    """An 18-character identity number that looks real (region, birth date, sex, check digit)."""
    seq = rng.randrange(0, 100) * 10 + rng.randrange(0, 10)
    seq = seq - seq % 2 + (0 if female else 1)  # the 17th digit is odd for men, even for women
    first17 = f"{region_code}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_check_digit(first17)


def birth_date(rng: random.Random, year_from: int, year_to: int) -> date:
    start = date(year_from, 1, 1)
    span = (date(year_to, 12, 31) - start).days
    return start + timedelta(days=rng.randrange(span + 1))


# --- places ---------------------------------------------------------------------------------------

PLACE_FIRST = "枫桐澄浦湖溪泾荷柳梅竹杏松栖凤鹤龙望永长新东西南北金玉银虹清白石青岚云月星霞翠锦华嘉和兴泰安康宁德瑞丰"
PLACE_SECOND = "桥塘泾浜渡港湾墩庄泽溪山岭园门浦苑林湖里坊巷口亭阳滨"
TOWN_THIRD = "关镇泾桥墅渡"  # for three-character town names like 浒墅关

ROAD_FIRST = "长江黄河珠江淮海太湖金山银杏梧桐香樟紫藤玉兰锦绣人民建设解放友谊和平幸福团结迎春文昌富春华山嵩山泰山滨河塔园竹园枫林桂花"
ROAD_SUFFIX = ("路", "路", "路", "街", "大道", "巷", "弄")
COMPOUND_SUFFIX = ("花园", "新村", "小区", "苑", "家园", "公寓", "雅苑", "名邸", "佳园", "嘉园")
VILLAGE_GROUP = "一二三四五六七八九十"

SCHOOL_SUFFIX = ("实验小学", "中心小学", "初级中学", "实验中学", "中心幼儿园", "高级中学")
PARK_SUFFIX = ("公园", "湿地公园", "体育公园", "滨河公园", "文化广场")
SITE_SUFFIX = ("安置房项目工地", "地块建设工地", "道路改造工地", "商业综合体工地", "产业园建设工地")
ENTERPRISE_SUFFIX = (
    "科技有限公司",
    "精密机械有限公司",
    "电子有限公司",
    "新材料有限公司",
    "纺织有限公司",
    "物流有限公司",
    "食品有限公司",
)
KEY_PLACE_KINDS = (
    "网吧",
    "加油站",
    "农贸市场",
    "KTV",
    "汽车站",
    "宾馆",
    "废品收购站",
    "烟花爆竹经营点",
    "养老院",
    "医院",
)
SHOP_KINDS = ("便利店", "小吃店", "面馆", "五金店", "理发店", "水果店", "棋牌室", "快递驿站", "菜场摊位", "药店")


def two_char(rng: random.Random) -> str:
    return rng.choice(PLACE_FIRST) + rng.choice(PLACE_SECOND)


def unique(rng: random.Random, make, used: set[str], tries: int = 200) -> str:
    """Call ``make(rng)`` until it gives a name not in ``used`` (then add it)."""
    for _ in range(tries):
        name = make(rng)
        if name not in used:
            used.add(name)
            return name
    name = make(rng) + str(len(used))
    used.add(name)
    return name


def town_root(rng: random.Random) -> str:
    root = two_char(rng)
    if rng.random() < 0.2:
        root = rng.choice(PLACE_FIRST) + rng.choice(PLACE_FIRST) + rng.choice(TOWN_THIRD)
    return root


def community_root(rng: random.Random) -> str:
    return rng.choice(PLACE_FIRST) + rng.choice(PLACE_FIRST + PLACE_SECOND)


def village_root(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:  # 张家浜, 陆家桥
        surname = rng.choices(_SUR_CHARS, _SUR_WEIGHTS)[0]
        return surname + "家" + rng.choice("浜桥港湾庄埭宅巷")
    if r < 0.5:
        return rng.choice(PLACE_FIRST) + rng.choice(PLACE_SECOND) + rng.choice("港浜圩")
    return two_char(rng)


def road(rng: random.Random) -> str:
    i = rng.randrange(0, len(ROAD_FIRST) // 2) * 2
    return ROAD_FIRST[i : i + 2] + rng.choice(ROAD_SUFFIX)


def compound(rng: random.Random) -> str:
    return two_char(rng) + rng.choice(COMPOUND_SUFFIX)


def dedicated_subject(rng: random.Random, root: str) -> tuple[str, str]:
    """(kind, name) of what a dedicated grid is drawn around: school, park, site or enterprise."""
    kind = rng.choices(("school", "park", "site", "enterprise"), (3, 2, 2, 3))[0]
    if kind == "school":
        return kind, root + rng.choice(SCHOOL_SUFFIX)
    if kind == "park":
        return kind, root + rng.choice(PARK_SUFFIX)
    if kind == "site":
        return kind, root + rng.choice(SITE_SUFFIX)
    return kind, two_char(rng) + rng.choice(ENTERPRISE_SUFFIX)


CN_NUM = "零一二三四五六七八九十"


def cn_number(n: int) -> str:
    """1..99 in Chinese numerals (第十二网格)."""
    if n <= 10:
        return CN_NUM[n]
    if n < 20:
        return "十" + CN_NUM[n - 10]
    tens, ones = divmod(n, 10)
    return CN_NUM[tens] + "十" + (CN_NUM[ones] if ones else "")
