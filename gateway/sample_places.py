"""Directory: the sample's places — prefectures, counties and the parts their
township and village names are composed of, in every language the area speaks.

Used by `gateway.samplegen`; names below the county are invented (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random

# -- names ---------------------------------------------------------------------------------

# Place-name parts of the Xinjiang counties: (zh, ug, kk, en). Uyghur and Kazakh are in
# Arabic script as used in Xinjiang; Chinese-origin names are transliterated, the
# meaning names (红旗, 团结 …) translated, the Turkic ones written as the Turkic word.
_XjPart = tuple[str, str, str, str]

_XJ_HAN_FIRST: tuple[_XjPart, ...] = (
    ("榆树", "يۈشۇ", "يۋشۋ", "Yushu"),
    ("三工", "سەنگۇڭ", "سانگوڭ", "Sangong"),
    ("六工", "لىيۇگۇڭ", "ليۋگوڭ", "Liugong"),
    ("二工", "ئەرگۇڭ", "ەرگوڭ", "Ergong"),
    ("大西", "داشى", "داشي", "Daxi"),
    ("杏花", "شىڭخۇا", "شيڭحۋا", "Xinghua"),
    ("五星", "ۋۇشىڭ", "ۋۋشيڭ", "Wuxing"),
    ("永丰", "يۇڭفېڭ", "يوڭفىڭ", "Yongfeng"),
    ("芨芨", "جىجى", "جيجي", "Jiji"),
    ("老龙", "لاۋلۇڭ", "لاۋلوڭ", "Laolong"),
    ("新户", "شىنخۇ", "شينحۋ", "Xinhu"),
    ("八家", "باجيا", "باجيا", "Bajia"),
)
_XJ_HAN_SECOND: tuple[_XjPart, ...] = (
    ("沟", "گۇ", "گوۋ", "gou"),
    ("泉", "چۈەن", "چۋان", "quan"),
    ("湖", "خۇ", "حۋ", "hu"),
    ("庄子", "جۇاڭزى", "جۋاڭزى", "zhuangzi"),
    ("梁", "لياڭ", "لياڭ", "liang"),
    ("湾", "ۋەن", "ۋان", "wan"),
    ("渠", "چۈ", "چۋ", "qu"),
    ("滩", "تەن", "تان", "tan"),
)
# Names that are used alone and translated rather than transliterated.
_XJ_MEANING: tuple[_XjPart, ...] = (
    ("红旗", "قىزىل بايراق", "قىزىل تۋ", "Hongqi"),
    ("幸福", "بەخت", "باقىت", "Xingfu"),
    ("团结", "ئىتتىپاق", "ىنتىماق", "Tuanjie"),
    ("光明", "يورۇقلۇق", "جارىق", "Guangming"),
    ("和平", "تىنچلىق", "بەيبىتشىلىك", "Heping"),
    ("胜利", "غەلىبە", "جەڭىس", "Shengli"),
)
_XJ_TURKIC_FIRST: tuple[_XjPart, ...] = (
    ("阿克", "ئاق", "اق", "Aq"),
    ("喀拉", "قارا", "قارا", "Qara"),
    ("萨尔", "سېرىق", "سارى", "Sary"),
    ("阔克", "كۆك", "كوك", "Kok"),
    ("别斯", "بەش", "بەس", "Bes"),
    ("阿拉", "ئالا", "الا", "Ala"),
    ("克孜勒", "قىزىل", "قىزىل", "Qyzyl"),
)
_XJ_TURKIC_SECOND: tuple[_XjPart, ...] = (
    ("布拉克", "بۇلاق", "بۇلاق", "bulaq"),
    ("苏", "سۇ", "سۋ", "su"),
    ("托别", "تۆپە", "توبە", "tobe"),
    ("塔斯", "تاش", "تاس", "tas"),
    ("库勒", "كۆل", "كول", "kol"),
)
# Suffix per division kind: (zh, ug, kk, en).
_XJ_KIND: dict[str, _XjPart] = {
    "street": ("路街道", " يولى كوچا باشقارمىسى", " جولى كوشە باسقارماسى", " Road Subdistrict"),
    "town": ("镇", " بازىرى", " قالاشىعى", " Town"),
    "township": ("乡", " يېزىسى", " اۋىلى", " Township"),
    "ethnic_township": (
        "哈萨克民族乡",
        " قازاق مىللەتلىك يېزىسى",
        " قازاق ۇلتتىق اۋىلى",
        " Kazakh Ethnic Township",
    ),
    "community": ("社区", " مەھەللىسى", " قاۋىمى", " Community"),
    "village": ("村", " كەنتى", " قىستاعى", " Village"),
}

# Ordos: Mongolian place-name parts (zh, mn in traditional script, en).
_MnPart = tuple[str, str, str]

_MN_FIRST: tuple[_MnPart, ...] = (
    ("巴音", "ᠪᠠᠶᠠᠨ", "Bayan"),
    ("乌兰", "ᠤᠯᠠᠭᠠᠨ", "Ulaan"),
    ("查干", "ᠴᠠᠭᠠᠨ", "Chagaan"),
    ("呼和", "ᠬᠥᠬᠡ", "Khokh"),
    ("哈日", "ᠬᠠᠷᠠ", "Khar"),
    ("额尔登", "ᠡᠷᠳᠡᠨᠢ", "Erdene"),
    ("沙日", "ᠰᠢᠷ᠎ᠠ", "Shar"),
    ("阿拉坦", "ᠠᠯᠲᠠᠨ", "Altan"),
    ("乌力吉", "ᠥᠯᠵᠡᠢ", "Olzii"),
)
_MN_SECOND: tuple[_MnPart, ...] = (
    ("淖尔", "ᠨᠠᠭᠤᠷ", "Nuur"),
    ("布拉格", "ᠪᠤᠯᠠᠭ", "Bulag"),
    ("陶勒盖", "ᠲᠣᠯᠣᠭᠠᠢ", "Tolgoi"),
    ("敖包", "ᠣᠪᠣᠭ᠎ᠠ", "Oboo"),
    ("高勒", "ᠭᠣᠤᠯ", "Gol"),
    ("塔拉", "ᠲᠠᠯ᠎ᠠ", "Tal"),
    ("希里", "ᠰᠢᠯᠢ", "Shil"),
)
_MN_KIND: dict[str, _MnPart] = {
    "street": ("街道", " ᠭᠤᠳᠤᠮᠵᠢ", " Subdistrict"),
    "town": ("镇", " ᠪᠠᠯᠭᠠᠰᠤ", " Town"),
    "community": ("社区", " ᠬᠣᠷᠣᠭᠠᠯᠠᠩ", " Community"),
    "village": ("村", " ᠭᠠᠴᠠᠭ᠎ᠠ", " Village"),
    "gachaa": ("嘎查", " ᠭᠠᠴᠠᠭ᠎ᠠ", " Gachaa"),
}

_GROUPS: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "schools",
        {"zh": "学校", "ug": "مەكتەپلەر", "kk": "مەكتەپتەر", "mn": "ᠰᠤᠷᠭᠠᠭᠤᠯᠢ", "en": "schools"},
    ),
    (
        "care_homes",
        {
            "zh": "养老院",
            "ug": "قېرىلار ئۆيى",
            "kk": "قارتتار ءۇيى",
            "mn": "ᠠᠰᠠᠷᠠᠮᠵᠢ ᠶᠢᠨ ᠭᠡᠷ",
            "en": "care homes",
        },
    ),
    (
        "hospitals",
        {
            "zh": "医院",
            "ug": "دوختۇرخانىلار",
            "kk": "اۋرۋحانالار",
            "mn": "ᠡᠮᠨᠡᠯᠭᠡ",
            "en": "hospitals",
        },
    ),
    (
        "tourist_sites",
        {
            "zh": "旅游景区",
            "ug": "ساياھەت رايونلىرى",
            "kk": "ساياحات ورىندارى",
            "mn": "ᠵᠢᠭᠤᠯᠴᠢᠯᠠᠯ ᠤᠨ ᠣᠷᠣᠨ",
            "en": "tourist sites",
        },
    ),
    (
        "herders",
        {"zh": "牧民", "ug": "چارۋىچىلار", "kk": "مالشىلار", "mn": "ᠮᠠᠯᠴᠢᠨ", "en": "herders"},
    ),
    (
        "enterprises",
        {
            "zh": "企业",
            "ug": "كارخانىلار",
            "kk": "كاسىپورىندار",
            "mn": "ᠠᠵᠢᠯ ᠠᠬᠤᠢ",
            "en": "enterprises",
        },
    ),
    (
        "officials",
        {"zh": "干部", "ug": "كادىرلار", "kk": "كادرلار", "mn": "ᠠᠯᠪᠠᠨ ᠲᠤᠰᠢᠮᠠᠯ", "en": "officials"},
    ),
    (
        "village_officials",
        {
            "zh": "村干部",
            "ug": "كەنت كادىرلىرى",
            "kk": "قىستاق كادرلارى",
            "mn": "ᠭᠠᠴᠠᠭ᠎ᠠ ᠶᠢᠨ ᠠᠯᠪᠠᠨ ᠲᠤᠰᠢᠮᠠᠯ",
            "en": "village officials",
        },
    ),
)


def _xj_name(part: _XjPart, kind: str) -> dict[str, str]:
    zh, ug, kk, en = part
    szh, sug, skk, sen = _XJ_KIND[kind]
    return {"zh": zh + szh, "ug": ug + sug, "kk": kk + skk, "en": en + sen}


def _mn_name(part: _MnPart, kind: str) -> dict[str, str]:
    zh, mn, en = part
    szh, smn, sen = _MN_KIND[kind]
    return {"zh": zh + szh, "mn": mn + smn, "en": en + sen}


class _NamePool:
    """Base names of one county, drawn without replacement (unique within the county)."""

    def __init__(self, rng: Random, family: str) -> None:
        self.family = family
        self.xj_han: list[_XjPart] = []
        self.xj_turkic: list[_XjPart] = []
        self.mn: list[_MnPart] = []
        self.streets_xj: list[_XjPart] = []
        self.streets_mn: list[_MnPart] = []
        if family == "xj":
            self.xj_han = [*_XJ_HAN_FIRST, *_XJ_MEANING]
            for a in _XJ_HAN_FIRST:
                for b in _XJ_HAN_SECOND:
                    self.xj_han.append((a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]))
            for a in _XJ_TURKIC_FIRST:
                for b in _XJ_TURKIC_SECOND:
                    self.xj_turkic.append((a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]))
            self.streets_xj = [*_XJ_HAN_FIRST, *_XJ_MEANING]
            rng.shuffle(self.xj_han)
            rng.shuffle(self.xj_turkic)
            rng.shuffle(self.streets_xj)
        else:
            self.mn = list(_MN_FIRST)
            for c in _MN_FIRST:
                for d in _MN_SECOND:
                    self.mn.append((c[0] + d[0], f"{c[1]} {d[1]}", f"{c[2]} {d[2]}"))
            self.streets_mn = list(_MN_FIRST)
            rng.shuffle(self.mn)
            rng.shuffle(self.streets_mn)

    def name(self, kind: str, turkic: bool) -> dict[str, str]:
        if self.family == "mn":
            pool = self.streets_mn if kind == "street" else self.mn
            return _mn_name(pool.pop(), kind)
        if kind == "street":
            return _xj_name(self.streets_xj.pop(), kind)
        first, second = (self.xj_turkic, self.xj_han) if turkic else (self.xj_han, self.xj_turkic)
        return _xj_name((first or second).pop(), kind)


# -- the sample's shape ----------------------------------------------------------------------

_Langs = tuple[str, ...]
_LangChoice = tuple[tuple[_Langs, int], ...]


@dataclass(frozen=True)
class _Town:
    """A township-level division (街道, 镇, 乡) and what lies under it."""

    suffix: int  # the 3 digits after the county code
    kind: str  # street | town | township | ethnic_township
    communities: tuple[int, int] = (0, 0)  # how many, min and max
    villages: tuple[int, int] = (0, 0)
    village_km: float = 5.0  # side of a village's square on the layout grid
    pastoral: float = 0.0  # share of pastoral (herding) villages


@dataclass(frozen=True)
class _County:
    prefecture: str
    code: str
    kind: str
    name: dict[str, str]
    languages: _Langs
    family: str  # xj | mn
    lat: float
    lon: float
    cos_lat: float  # cos(lat), written out so no libm call decides a coordinate
    community_km: float
    community_pop: tuple[int, int, int]  # low, high, mode
    village_pop: tuple[int, int, int]
    community_langs: _LangChoice
    village_langs: _LangChoice
    pastoral_langs: _LangChoice
    towns: tuple[_Town, ...]


@dataclass(frozen=True)
class _Prefecture:
    code: str
    name: dict[str, str]
    languages: _Langs


_PREFECTURES = (
    _Prefecture(
        "652300",
        {
            "zh": "昌吉回族自治州",
            "ug": "سانجى خۇيزۇ ئاپتونوم ئوبلاستى",
            "kk": "سانجي حۋيزۋ اۆتونوميالى وبلىسى",
            "en": "Changji Hui Autonomous Prefecture",
        },
        ("zh", "ug", "kk"),
    ),
    _Prefecture(
        "150600",
        {"zh": "鄂尔多斯市", "mn": "ᠣᠷᠳᠣᠰ ᠬᠣᠲᠠ", "en": "Ordos City"},
        ("zh", "mn"),
    ),
)

_COUNTIES = (
    _County(
        prefecture="652300",
        code="652301",
        kind="city",
        name={"zh": "昌吉市", "ug": "سانجى شەھىرى", "kk": "سانجي قالاسى", "en": "Changji City"},
        languages=("zh", "ug", "kk"),
        family="xj",
        lat=44.01,
        lon=87.30,
        cos_lat=0.7192,
        community_km=1.1,
        community_pop=(2000, 12000, 5500),
        village_pop=(300, 3000, 1200),
        community_langs=((("zh", "ug"), 60), (("zh", "ug", "kk"), 25), (("zh",), 15)),
        village_langs=(
            (("zh", "ug"), 45),
            (("zh", "ug", "kk"), 25),
            (("zh", "kk"), 20),
            (("zh",), 10),
        ),
        pastoral_langs=((("kk", "zh"), 70), (("kk", "zh", "ug"), 30)),
        towns=(
            *(_Town(i, "street", communities=(6, 8)) for i in range(1, 7)),
            *(
                _Town(i, "town", villages=(8, 11), village_km=4.5, pastoral=0.05)
                for i in range(100, 104)
            ),
            _Town(200, "township", villages=(8, 11), village_km=5.0, pastoral=0.15),
            _Town(201, "township", villages=(8, 11), village_km=5.0, pastoral=0.15),
            _Town(202, "ethnic_township", villages=(8, 11), village_km=9.0, pastoral=0.9),
        ),
    ),
    _County(
        prefecture="652300",
        code="652328",
        kind="autonomous_county",
        name={
            "zh": "木垒哈萨克自治县",
            "ug": "مورى قازاق ئاپتونوم ناھىيىسى",
            "kk": "موري قازاق اۆتونوميالى اۋدانى",
            "en": "Mori Kazakh Autonomous County",
        },
        languages=("kk", "zh", "ug"),
        family="xj",
        lat=43.83,
        lon=90.28,
        cos_lat=0.7214,
        community_km=1.0,
        community_pop=(2000, 6000, 3000),
        village_pop=(300, 3000, 1100),
        community_langs=((("zh", "kk", "ug"), 50), (("zh", "kk"), 50)),
        village_langs=((("zh", "kk"), 40), (("kk", "zh"), 40), (("kk", "zh", "ug"), 20)),
        pastoral_langs=((("kk", "zh"), 75), (("kk", "zh", "ug"), 25)),
        towns=(
            _Town(100, "town", communities=(2, 4), villages=(5, 8), village_km=6.0),
            _Town(101, "town", villages=(5, 8), village_km=6.0, pastoral=0.4),
            *(
                _Town(i, "township", villages=(5, 8), village_km=7.0, pastoral=0.4)
                for i in range(200, 203)
            ),
            *(
                _Town(i, "township", villages=(5, 8), village_km=11.0, pastoral=0.9)
                for i in range(203, 207)
            ),
        ),
    ),
    _County(
        prefecture="150600",
        code="150603",
        kind="district",
        name={"zh": "康巴什区", "mn": "ᠬᠠᠩᠪᠠᠰᠢ ᠲᠣᠭᠣᠷᠢᠭ", "en": "Kangbashi District"},
        languages=("zh", "mn"),
        family="mn",
        lat=39.61,
        lon=109.78,
        cos_lat=0.7704,
        community_km=1.3,
        community_pop=(2000, 12000, 3000),
        village_pop=(300, 2500, 900),
        community_langs=((("zh", "mn"), 80), (("zh",), 20)),
        village_langs=((("zh", "mn"), 60), (("mn", "zh"), 40)),
        pastoral_langs=((("mn", "zh"), 100),),
        towns=(
            *(_Town(i, "street", communities=(4, 6)) for i in range(1, 5)),
            _Town(100, "town", villages=(4, 6), village_km=5.0, pastoral=0.4),
        ),
    ),
)

_COUNTY_LABEL = {c.code: c.name["en"] for c in _COUNTIES}
