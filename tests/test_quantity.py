"""Quantities in 2025 item names (text.quantity) and the `pack_totals` feature group."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from amzkit.core.schema import load_split
from amzkit.text.catalog import parse_catalog_column
from amzkit.text.features import FEATURE_GROUPS, build_features
from amzkit.text.quantity import NameQuantities, name_quantities, pack_total_features, total_quantity_log

OZ_PER_POUND, FL_OZ_PER_ML = 16.0, 1 / 29.5735295625


@pytest.mark.parametrize(("name", "size", "family", "count", "packs"), [
    ("La Victoria Green Taco Sauce Mild, 12 Ounce (Pack of 6)", 12.0, "weight", None, 6),
    ("Sour Patch Kids, 2-Ounce Bags (Pack of 48)", 2.0, "weight", None, 48),
    ("kedem Sherry Cooking Wine, 12.7 Ounce - 12 per case.", 12.7, "weight", None, 12),
    ("Albanese Gummi Bears, 5-Pound Bags (Pack of 2)", 5 * OZ_PER_POUND, "weight", None, 2),
    ("Wyman's Wild Blueberry Juice, 500mL (12 Pack)", 500 * FL_OZ_PER_ML, "volume", None, 12),
    ("Snapple Diet Iced Tea, Peach, 16 fl oz", 16.0, "volume", None, None),
    ("Ferrara Pan Cherryheads .08 Oz Each (Pack of 24)", 0.08, "weight", None, 24),
    ("Chicken of the Sea Tuna, 5 Ounce Cans (24 Cans), Wild Caught", 5.0, "weight", None, 24),
    ("Premium Restaurant Oyster crackers 12 oz (2 bags)", 12.0, "weight", None, 2),
    ("Green Mountain Coffee 24 Count K-Cups - (Pack of 4)", None, None, 24, 4),
    ("Tim Hortons Original Blend, 80ct K-Cups", None, None, 80, None),
    ("Passionfruit Rooibos Tea (50 tea bags, ZIN: 540534) - 3 Pack", None, None, 50, 3),
    ("Organic Tulsi Herbal Tea (1/2LBS / 8Oz)", 8.0, "weight", None, None),
    ("Kraft Extra Heavy Mayo (1,000 g Pail)", 1000 / 28.349523125, "weight", None, None),
])
def test_name_quantities_read_size_count_and_packs(name, size, family, count, packs):
    got = name_quantities(name)
    assert got.size_family == family and got.item_count == count and got.packs == packs
    assert (got.item_size is None) if size is None else got.item_size == pytest.approx(size, rel=1e-4)


@pytest.mark.parametrize("name", [
    "TWININGS 09183 Tea Bags, Earl Grey",  # a model number with a leading zero is no count
    "Avery Economy View Binder, 3-Inch Capacity",  # a length is not a size of contents
    "Gourmet Ground Cardamom",
    "",
    None,
])
def test_names_without_a_quantity_give_none(name):
    got = name_quantities(name)
    assert got.item_size is None and got.item_count is None
    if name is None or name == "":
        assert got == NameQuantities(None, None, None, None)


def _catalog(name: str, value: float | None, unit: str | None) -> str:
    lines = [f"Item Name: {name}"]
    if value is not None:
        lines += [f"Value: {value}", f"Unit: {unit}"]
    return "\n".join(lines)


def test_pack_totals_know_whether_value_states_one_item_or_the_pack():
    texts = pd.Series([
        _catalog("Taco Sauce, 12 Ounce (Pack of 6)", 72.0, "Fl Oz"),  # Value is the pack: 72
        _catalog("M&M'S, 4.5 oz Resealable Bag (Pack of 8)", 4.5, "Ounce"),  # Value is one bag: 8 x 4.5
        _catalog("Davids Cookies Muffin, 6 Ounce -- 12 per case.", 12.0, "Count"),  # Value counts: 12 x 6 oz
        _catalog("Mystery Box", None, None),  # nothing known
        _catalog("Coffee Filters, 600 Count (Pack of 1)", 600.0, "Count"),
    ])
    out = pack_total_features(parse_catalog_column(texts))
    assert out["value_per_item"].tolist()[:2] == [0.0, 1.0]
    assert np.isnan(out["value_per_item"].iloc[2])
    assert np.expm1(out["total_volume_log"].iloc[0]) == pytest.approx(72.0)
    assert np.expm1(out["total_weight_log"].iloc[1]) == pytest.approx(36.0)
    assert np.expm1(out["total_weight_log"].iloc[2]) == pytest.approx(72.0)
    assert np.expm1(out["total_items_log"].iloc[2]) == pytest.approx(12.0)
    assert out.iloc[3].isna().all()
    assert np.expm1(out["name_count_log"].iloc[4]) == pytest.approx(600.0)
    total = np.expm1(total_quantity_log(parse_catalog_column(texts)))
    assert total[:3] == pytest.approx([72.0, 36.0, 12.0]) and np.isnan(total[3])


def test_pack_totals_read_real_listings_whose_value_or_name_misled_them():
    """Real amz25_dev rows (names shortened): a first size that is the pack's total, a placeholder Value, a Count
    Value the name does not state, sizes a product makes or holds, a decimal comma."""
    texts = pd.Series([
        _catalog("Potato Starch 40lb (4lb Pack of 10)", 640.0, "Ounce"),  # Value is the pack, not 10 x 640 oz
        _catalog("Ground Coffee, 36 Ounce (12 Ounce Bags, Pack of 3)", 36.0, "Ounce"),  # not 108
        _catalog("Caramel Popcorn, 5 lbs Bulk Bag", 1.0, "Ounce"),  # a placeholder 1: the name's 80 oz
        _catalog("LorAnn Lemon Oil, 16 ounce bottle", 1.0, "Fl Oz"),  # 16, across ounces and fl oz
        _catalog("Lipton Decaffeinated Tea Bags", 40.0, "Count"),  # 40 things sold, though the name says none
        _catalog("Herbal Tea, 24 Count", 40.0, "Count"),  # the name's count first
        _catalog("M&M'S, 4.5 oz Resealable Bag (Pack of 8)", 4.5, "Ounce"),  # Value is one bag: still 8 x 4.5
    ])
    out = pack_total_features(parse_catalog_column(texts))
    weight = np.expm1(out["total_weight_log"].to_numpy())
    assert weight[[0, 1, 2, 6]] == pytest.approx([640.0, 36.0, 80.0, 36.0])
    assert np.expm1(out["total_volume_log"].iloc[3]) == pytest.approx(16.0)
    assert out["value_per_item"].tolist()[:2] == [0.0, 0.0] and out["value_per_item"].iloc[6] == 1.0
    assert np.expm1(out["total_items_log"].to_numpy()[[4, 5]]) == pytest.approx([40.0, 24.0])
    assert name_quantities("Cold Brew Packets | Makes 64 oz of Pitcher Per Bag (Pack of 10)").item_size is None
    assert name_quantities("2-Shelf Utility Cart with Wheels, 300-Pound Capacity").item_size is None
    assert name_quantities("Rajah Curry Powder 3,53oz, 100g").item_size == pytest.approx(100 / 28.349523125)
    assert name_quantities("Silver Dollar Brioche ,1ounce -- 90 per case").item_size == 1.0
    assert name_quantities("Flavor Drops, Enough for 24 Gallons, 1.62 fl oz").item_size == pytest.approx(1.62)


def test_pack_totals_take_an_inner_size_only_from_the_pack_phrase_and_a_placeholder_only_when_tiny():
    """Names the rules above must not misread: a serving size or a second product is no inner item, and a
    Value that is an item's own size (not a placeholder) stays."""
    texts = pd.Series([
        _catalog("Granola 12 oz Bag, 2 oz Servings (Pack of 6)", 12.0, "Ounce"),  # 6 bags of 12 oz
        _catalog("Shampoo 32 oz and 8 oz Conditioner, Pack of 4", 32.0, "Fl Oz"),  # 4 x 32
        _catalog("Ground Coffee, 36 Ounce (12 Ounce Bags, Pack of 3)", 12.0, "Ounce"),  # one bag: 3 x 12, never 3 x 36
        _catalog("Caramel Popcorn, 5 lbs Bulk Bag", 40.0, "Ounce"),  # half the name's size: Value stays
    ])
    out = pack_total_features(parse_catalog_column(texts))
    assert np.expm1(out["total_weight_log"].to_numpy()[[0, 2, 3]]) == pytest.approx([72.0, 36.0, 40.0])
    assert out["value_per_item"].iloc[2] == 1.0
    assert np.expm1(out["total_volume_log"].iloc[1]) == pytest.approx(128.0)


@pytest.mark.parametrize(("name", "size"), [
    ("Protein Bars, 16g of Protein & 3g of Sugar (9 Bars)", None),
    ("Puffs (300g, 21g Protein, 2g Net Carbs)", 300 / 28.349523125),
    ("Energy Gum 50mg Caffeine Per Piece, 24 Pieces (Pack of 12)", None),
    ("Meat Sticks, 13g Protein Per Stick, 2 oz. (Pack of 20)", 2.0),
    ("Tate & Lyle 500g Sugar", 500 / 28.349523125),  # a weight, not a nutrient: 100 g or more
    ("Nut Bars, 20g High Protein, Gluten Free, 12 Count", None),  # modifiers before the nutrient
    ("Snack Bars, 8 g Plant-Based Protein, 5 g Fiber, 1.5 oz (42 g) Each", 1.5),
    ("Sports Drink with 12g Whey Protein Isolate, 16.9 Fl Oz", 16.9),
    ("Instant Oats, 10 Packets, 30g Whole Grains, 5g Plant Protein", None),
    ("Erythritol Powder, 4g per Serving, 2kg (4.4 lbs)", 2000 / 28.349523125),  # a serving's grams
    ("Mustard Sachets (5.5g) - 100 Count", 5.5 / 28.349523125),  # one sachet's weight stays a size
])
def test_a_nutrients_grams_are_no_item_size(name, size):
    """Real amz25_dev names: "15g Protein" in a serving is not the item's weight (50 rows read it as one)."""
    assert name_quantities(name).item_size == (None if size is None else pytest.approx(size))


def test_pack_totals_is_a_feature_group_on_both_schemas():
    assert "pack_totals" in FEATURE_GROUPS
    train = pd.DataFrame({"PRODUCT_ID": [1, 2], "TITLE": ["Rope, 50 ft (Pack of 3)", "Mug 12 oz"],
                          "BULLET_POINTS": ["", ""], "DESCRIPTION": ["", ""], "PRODUCT_TYPE_ID": [5, 5],
                          "PRODUCT_LENGTH": [100.0, 4.0]})
    x_train, _ = build_features(train, train.head(1).drop(columns="PRODUCT_LENGTH"), "amazon2023", ["pack_totals"])
    assert x_train["name_packs"].tolist()[0] == 3 and x_train["name_size_log"].iloc[1] == pytest.approx(np.log1p(12))
    assert x_train["value_per_item"].isna().all()  # the 2023 rows have no Value line


def test_real_2025_names_give_sizes_and_packs(shared_data):
    """On the real rows: most names state a size, many a pack; parsed totals agree with Value where it is one."""
    rows = load_split(shared_data / "amz25_dev.csv", "amazon2025", "train")
    parsed = parse_catalog_column(rows["catalog_content"])
    out = pack_total_features(parsed)
    assert out["name_size_log"].notna().mean() > 0.6
    assert out["name_packs"].notna().mean() > 0.3
    sized = parsed["unit_family"].isin(["weight", "volume"]).to_numpy() & out["value_per_item"].notna().to_numpy()
    assert sized.sum() > 500 and (out.loc[sized, "value_per_item"] == 0).mean() > 0.5  # Value is mostly the pack


@pytest.mark.parametrize(("name", "size"), [
    ("Farmhouse Plaid Tea Towels 28L x 16W in. Set of 2", None),
    ("Melamine Serving Tray 18.5L in. x 10W in. Cracked Glaze", None),
    ("Rustic Pine Salad Bowl 8.2H x 10.5L x 4W in. Navy", None),
    ("Sparkling Lemonade 1.5L, 50.7 Fl Oz", 1500 / 29.5735295625),  # a litre is still a litre
    ("Coconut Water 1L (Pack of 12)", 1000 / 29.5735295625),
    ("Olive Oil Tin, 3 L x 2", 3000 / 29.5735295625),  # "x 2" with no W/H/D: a pack, not a dimension
])
def test_a_length_lettered_l_in_a_dimension_is_no_litre(name, size):
    """ "26L x 18W in." (length x width) on a home goods listing read as 26 litres."""
    assert name_quantities(name).item_size == (None if size is None else pytest.approx(size))


def test_a_value_of_one_or_of_the_packs_under_the_names_size_is_a_placeholder():
    """A Value of 1 ("1" Ounce for an "8.5 oz" pouch) or of the packs ("Ounce" 6 for "7.5oz Pack of 6"), written in
    a weight or volume unit, counts items, not ounces: the name's total replaces it. A Value that is the item's
    size, the pack's, or 1 for a 1.1 oz item stays."""
    texts = pd.Series([
        _catalog("Monk Fruit Sweetener, Granular, 8.5 oz (240 g)", 1.0, "Ounce"),  # 8.5, not 1
        _catalog("Grill Seasoning 7.5oz Pack of 6", 6.0, "Ounce"),  # 45, not 6
        _catalog("Corn Chips, 16 Ounce -- 9 per case.", 9.0, "Ounce"),  # 144, not 9
        _catalog("Aged Balsamic Vinegar, 8.5 Fl Oz Bottle", 1.0, "Fl Oz"),  # 8.5 fl oz
        _catalog("Snack Mix 1.1 oz", 1.0, "Ounce"),  # near the name's size: stays 1
        _catalog("Trail Mix 6 oz (Pack of 6)", 6.0, "Ounce"),  # one item's size: 36
        _catalog("Pretzels 2 oz (Pack of 4)", 4.0, "Ounce"),  # 4 is more than 0.8 x 2: stays 4
    ])
    out = pack_total_features(parse_catalog_column(texts))
    weight = np.expm1(out["total_weight_log"].to_numpy())
    assert weight[[0, 1, 2, 4, 5, 6]] == pytest.approx([8.5, 45.0, 144.0, 1.0, 36.0, 4.0])
    assert np.expm1(out["total_volume_log"].iloc[3]) == pytest.approx(8.5)


def test_a_count_value_that_multiplies_the_names_items_counts_the_single_things():
    """A Count Value that is a whole multiple of what the name counts states the single things the name gives only
    in part: "15 Piece, 10-Count" sells 150 pieces, "Toothpicks (24 Pack)" 480 picks. A Value that does not divide,
    or is the name's size in ounces, leaves the name's count."""
    texts = pd.Series([
        _catalog("Sugarfree Gum 12 Piece, 10-Count", 120.0, "Count"),  # 120, not 12
        _catalog("Cinnamon Toothpicks Tubes (20 Pack)", 400.0, "Count"),  # 400, not 20
        _catalog("Mint Gum - 40 per pack - 24 packs per case", 960.0, "Count"),  # 960, not 24
        _catalog("Nicotine Gum, 100 Count", 110.0, "Count"),  # no multiple: the name's 100
        _catalog("Chocolate Frosting 12 oz (Pack of 2)", 12.0, "Count"),  # the size, not a count: 2
        _catalog("Herbal Tea, 24 Count", 40.0, "Count"),  # no multiple: 24
    ])
    items = np.expm1(pack_total_features(parse_catalog_column(texts))["total_items_log"].to_numpy())
    assert items == pytest.approx([120.0, 400.0, 960.0, 100.0, 2.0, 24.0])


@pytest.mark.parametrize(("name", "size", "packs", "total"), [
    ("Kettle Potato Chips 24-1 Ounce Bags", 1.0, 24, False),
    ("Sweet Pickled Garlic, 2-16 Ounce Jars", 16.0, 2, False),
    ("Graham Crackers, Bulk Snacks, 12 - 14.4 oz Boxes", 14.4, 12, False),
    ("Mini Cookies, 20 - 1 oz Snack Packs", 1.0, 20, False),
    ("Cane Sugar, 40 lb (10-4 Lb Bags)", 40 * OZ_PER_POUND, 10, True),  # the first size is the packs' total
    ("Chicken Breasts 6-8 oz Pieces", 8.0, None, False),  # a range: no plural container after it
    ("Coffee Beans 2-5 lb", 5 * OZ_PER_POUND, None, False),
])
def test_packs_of_sized_containers_read_as_packs(name, size, packs, total):
    """ "24-1 Ounce Bags" is 24 bags of one ounce: the packs were not read, so a Count or placeholder Value made a
    one-ounce total."""
    got = name_quantities(name)
    assert got.item_size == pytest.approx(size) and got.packs == packs and got.size_is_pack_total == total


def test_a_count_value_with_packs_of_sized_containers_totals_them():
    texts = pd.Series([_catalog("Kettle Potato Chips 24-1 Ounce Bags", 24.0, "Count"),
                       _catalog("Sport Jelly Beans, 24 - 1 oz Bags", 1.0, "Ounce")])
    weight = np.expm1(pack_total_features(parse_catalog_column(texts))["total_weight_log"].to_numpy())
    assert weight == pytest.approx([24.0, 24.0])


class _ReadCounter:
    """A compiled pattern that counts the characters each search or match is handed."""

    def __init__(self, pattern) -> None:
        self.pattern, self.read = pattern, 0

    def _count(self, string: str, pos: int, endpos: int | None) -> None:
        self.read += (len(string) if endpos is None else min(endpos, len(string))) - pos

    def search(self, string: str, pos: int = 0, endpos: int | None = None):
        self._count(string, pos, endpos)
        return self.pattern.search(string, pos, len(string) if endpos is None else endpos)

    def match(self, string: str, pos: int = 0, endpos: int | None = None):
        self._count(string, pos, endpos)
        return self.pattern.match(string, pos, len(string) if endpos is None else endpos)


def test_a_long_name_is_read_in_linear_time(monkeypatch):
    """Each size's rules searched the whole name before and after it, so a name of n sizes took n^2 (a catalog text
    without labels is all name: 100 KB of '12 oz' took minutes); they read a bounded context around each size."""
    from amzkit.text import quantity

    counters = {name: _ReadCounter(getattr(quantity, name)) for name in (
        "_NOT_OWN_BEFORE", "_NOT_OWN_AFTER", "_NUTRIENT_AFTER", "_DIMENSION_AFTER", "_DIMENSION_BEFORE")}
    for name, counter in counters.items():
        monkeypatch.setattr(quantity, name, counter)
    n = 2000
    got = name_quantities("Makes 64 oz, 5g Protein " + "12 oz, 1 L x 2 L, 5 g " * n)
    assert got.item_size == pytest.approx(12.0) and got.size_family == "weight"
    assert sum(counter.read for counter in counters.values()) < 2000 * 4 * n  # 4 sizes each repeat


@pytest.mark.parametrize("number", ["9" * 400, "1" + "0" * 308, "1" + "0" * 40], ids=["400 digits", "1e308", "1e40"])
def test_an_absurd_number_in_a_name_is_no_size(number):
    """A 400-digit number before "oz" read as an infinite size, and 1e308 gallons overflowed when converted to fluid
    ounces: name_size_log and total_*_log were inf, and so the ridge_oof and neighbour_unit offsets of the row. A
    number above MAX_VALUE is no size, as a Value above it is none; the name's next size is read."""
    name = f"Tea {number} gallons, 12 oz (Pack of 6)"
    got = name_quantities(name)
    assert got.item_size == pytest.approx(12.0) and got.packs == 6
    parsed = parse_catalog_column(pd.Series([_catalog(name, 1e30, "Gallon"), f"Item Name: {number} oz"]))
    totals = pack_total_features(parsed).to_numpy(dtype=float)
    assert not np.isinf(totals).any() and not np.isinf(total_quantity_log(parsed)).any()


class _SeenStrings:
    """A compiled pattern that keeps every string it is handed."""

    def __init__(self, pattern, seen: list[str]) -> None:
        self.pattern, self.seen = pattern, seen

    def __getattr__(self, method: str):
        def call(string: str, *args):
            self.seen.append(string)
            return getattr(self.pattern, method)(string, *args)
        return call


def test_a_whitespace_run_in_a_name_is_read_as_one_space(monkeypatch):
    """"12 <2000 spaces> x" took seconds and 100 KB of them hours: the size, count and pack patterns ("\\s*-?\\s*")
    try every split of a whitespace run. A 2023 TITLE is not collapsed as a 2025 Item Name is; the rules now read a
    collapsed name (the same result: they read any whitespace run as one)."""
    from amzkit.text import catalog, quantity

    seen: list[str] = []
    for module in (quantity, catalog):
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                monkeypatch.setattr(module, name, _SeenStrings(value, seen))
    monkeypatch.setattr(catalog, "_PACK_PATTERNS", tuple(_SeenStrings(p, seen) for p in catalog._PACK_PATTERNS))
    got = name_quantities("Tea 12" + " " * 3000 + "Ounce \t (Pack \n of  6), 5 " + " " * 3000 + "q")
    assert got == name_quantities("Tea 12 Ounce (Pack of 6), 5 q") == NameQuantities(12.0, "weight", None, 6)
    assert seen and not any(re.search(r"\s\s", string) for string in seen)


@pytest.mark.parametrize(("name", "packs", "total"), [
    ("Graham Snacks, Cinnamon, 12.7oz Box (12 Pouches)", 12, True),  # the box's 12.7 oz holds the 12 pouches
    ("Cheese Crackers, Grab n' Go, 6.75lb Case (36 Pouches)", 36, True),
    ("Protein Bars, Sea Salt, 18.3oz Box (10 Bars)", 10, True),
    ("Lunch Snacks Variety Pack, 28.1oz Box (28 Packs)", 28, True),
    ("Half-Caff 72 Ounce, Ground Coffee, 12 Ounce Bag (Pack of 6)", 6, True),  # 6 bags of 12 make the 72
    ("Pasta Dinner 7.25 Oz Box (Pack of 24)", 24, False),  # 24 boxes
    ("Chunk Light Tuna, 5 Ounce Cans (24 Cans)", 24, False),
    ("Oat Milk, 32 oz Carton (12 Pack)", 12, False),
    ("Ground Coffee 72 Ounce, 10 Ounce Bag (Pack of 6)", 6, False),  # 6 x 10 is not 72
])
def test_a_box_size_that_holds_the_packs_is_the_pack_total(name, packs, total):
    """ "28.1oz Box (28 Packs)" is one box of 28 packs: its 28.1 oz, as Value states it, was taken for one pack's and
    multiplied by 28 (787 oz)."""
    got = name_quantities(name)
    assert got.packs == packs and got.size_is_pack_total == total


def test_a_box_size_that_holds_the_packs_totals_once():
    texts = pd.Series([_catalog("Lunch Snacks Variety Pack, 28.1oz Box (28 Packs)", 28.1, "Ounce"),
                       _catalog("Half-Caff 72 Ounce, Ground Coffee, 12 Ounce Bag (Pack of 6)", 72.0, "Ounce"),
                       _catalog("Pasta Dinner 7.25 Oz Box (Pack of 24)", 7.25, "Ounce")])
    out = pack_total_features(parse_catalog_column(texts))
    assert np.expm1(out["total_weight_log"].to_numpy()) == pytest.approx([28.1, 72.0, 174.0])
    assert out["value_per_item"].tolist() == [0.0, 0.0, 1.0]


def test_a_count_value_that_repeats_the_names_count_is_not_multiplied_by_the_packs():
    """ "1200 Count (Pack of 12)" with Value 1200 Count is 12 boxes of 100: the name's first count is already the packs'
    total and was multiplied again (14,400 tea bags)."""
    texts = pd.Series([
        _catalog("Earl Grey Tea 100 Pack, 1200 Count, (Pack of 12)", 1200.0, "Count"),  # 1200, not 14400
        _catalog("Breakfast Blend 36 Count Coffee Pods, 12 Count (Pack of 3)", 36.0, "Count"),  # 36, not 108
        _catalog("Espresso Pods, 60-Count Box (6 Packs of 10)", 60.0, "Count"),  # 60, not 360
        _catalog("Herbal Tea, 10 Tea Bags (Pack of 6)", 10.0, "Count"),  # the packs do not divide 10: 60
        _catalog("Mint Tea, 20 Count (Pack of 6)", 120.0, "Count"),  # Value is the total already: 120
        _catalog("Green Tea, 24-count (Pack of 6)", 24.0, "Ounce"),  # no Count Value: 144
    ])
    items = np.expm1(pack_total_features(parse_catalog_column(texts))["total_items_log"].to_numpy())
    assert items == pytest.approx([1200.0, 36.0, 60.0, 60.0, 120.0, 144.0])


@pytest.mark.parametrize(("name", "count", "packs"), [
    ("Original Glazed Doughnuts - 12 Donuts", 12, None),
    ("Painted Roses 50 cm - 125 Stems", 125, None),
    ("Thumbprint Cookies, 6.75 OZ Bag (18 Cookies)", 18, None),
    ("Sandwich Cookies, 15 Cookies per pack, 5.29 Ounce (Pack of 9)", 15, 9),
    ("Graham Crackers in Twin Packs (80 crackers total)", 80, None),
    ("Electrolyte Drink Mix, 20 Stickpacks", 20, None),
    ("Peppermint Variety Pack, 21 Pops", 21, None),
    ("Mexican Candy (100 Lollipops)", 100, None),
    ("Cherry Soda, 20oz Bottles, 12 Units", 12, None),
    ("Corn Tortillas - 24 Packages (288 Tortillas) (24 Pack)", 12, 24),  # 288 in all: 12 in each of the 24
])
def test_count_nouns_read_as_counts(name, count, packs):
    """ "12 Donuts", "125 Stems", "(18 Cookies)" were read as nothing: a listing of 125 roses had no item count."""
    got = name_quantities(name)
    assert got.item_count == count and got.packs == packs


def test_a_parenthesis_never_closed_before_many_pack_words_is_read_in_linear_time():
    """The pack-group pattern retried every 'pack' after a '(' never closed to the end of the name: an 88 KB name
    took 3 s, this 500 KB one over 3 minutes (measured on the old pattern); it reads as the same name cut short."""
    head = "36 Ounce (12 Ounce Bags, Pack of 3) ("
    name = head + "pack " * 100_000
    expected = NameQuantities(36.0, "weight", None, 3, True)
    assert name_quantities(name) == name_quantities(head + "pack " * 30) == expected
    out = pack_total_features(parse_catalog_column(pd.Series([_catalog(name, 36, "Ounce")])))
    assert out.iloc[0].to_dict() == pytest.approx({
        "name_size_log": np.log1p(36), "name_count_log": np.nan, "name_packs": 3.0, "value_per_item": 0.0,
        "total_weight_log": np.log1p(36), "total_volume_log": np.nan, "total_items_log": np.log1p(3)}, nan_ok=True)


def _old_pack_groups(name: str) -> list[tuple[int, int]]:
    """The pack groups as the one pattern found them (slow on a '(' never closed), for comparison."""
    from amzkit.text import quantity

    pattern = re.compile(rf"\([^()]*(?:\bpack|{quantity._SIZED_CONTAINERS})[^()]*\)", re.IGNORECASE)
    return [match.span() for match in pattern.finditer(name)]


PACK_GROUP_NAMES = [
    "Coffee, 12 Ounce (Pack of 6)", "40lb (4lb Pack of 10)", "36 Ounce (12 Ounce Bags, Pack of 3)",
    "Beans (5-4 Lb Bags)", "Soda (2-12 fl oz Cans) (Pack of 2)", "Backpack (Blue) (backpack)", "Tea (Packs)",
    "Tea (a (Pack of 2) b)", "Tea ((Pack of 2))", "Tea (Pack of 2", "Tea ( pack pack (Pack of 4) (6 Pack)",
    "Tea (12-16 oz cans)", "Tea (x12-16 oz cans)", "Tea (3 - 8oz. jars)", "(PACK) (unpack) (six-pack) ()",
    "Cups (16 oz Jumbo Cups)", "Water (6-500ml Bottles) and (2 - 1 L bottles, 4 pack)",
]


@pytest.mark.parametrize("name", PACK_GROUP_NAMES)
def test_pack_groups_are_the_ones_the_single_pattern_found(name):
    from amzkit.text.quantity import pack_groups

    assert pack_groups(name) == _old_pack_groups(name)


def test_pack_groups_of_the_real_names_are_the_ones_the_single_pattern_found(shared_data):
    from amzkit.text.quantity import pack_groups

    names = [*parse_catalog_column(load_split(shared_data / "amz25_dev.csv", "amazon2025", "train")
                                   ["catalog_content"])["item_name"],
             *pd.read_csv(shared_data / "amz23_dev.csv", dtype=str, keep_default_na=False)["TITLE"]]
    differ = [name for name in names if pack_groups(name) != _old_pack_groups(name)]
    assert not differ and sum(bool(pack_groups(name)) for name in names) > 1000


@pytest.mark.parametrize(("name", "size", "family", "packs"), [
    ("Sunny Acres Almond Butter (6x8OZ )", 8.0, "weight", 6),
    ("Acme Borscht Mix 3-pack 3x1.25oz", 1.25, "weight", 3),
    ("Acme Creamer Cups (50x0.375 fl oz)", 0.375, "volume", 50),
    ("Acme Vinaigrette (12 X16 oz)", 16.0, "weight", 12),
])
def test_name_quantities_read_a_size_glued_to_the_packs_times_sign(name, size, family, packs):
    """"6x8OZ" is six 8 oz items: the size after a glued "x" was skipped (its lookbehind refused a letter), so
    the name stated packs but no size, and a Count Value left the row without a total weight."""
    got = name_quantities(name)
    assert got.packs == packs and got.size_family == family
    assert got.item_size == pytest.approx(size, rel=1e-4)
    parsed = parse_catalog_column(pd.Series([_catalog(name, packs, "Count")]))
    totals = pack_total_features(parsed)
    assert totals[f"total_{family}_log"].iloc[0] == pytest.approx(np.log1p(size * packs), rel=1e-6)
