"""The demo competition's world as data: categories, brands, units, keywords, packs, colours and the
price effects each carries (what the synthetic listings and their prices are made from)."""

from __future__ import annotations

from dataclasses import dataclass

PRICE_RANGE = (0.5, 3000.0)


NOISE_SIGMA = 0.25


PREMIUM_PACKAGING_RATE = 0.2


PREMIUM_PACKAGING_EFFECT = 0.4  # added to log(price); visible only in pixels


QUALITY_EFFECT = 0.25  # per standard deviation of the latent quality; visible only as background brightness


DUPLICATE_RATE = 0.02  # share of train rows that relist an existing train product


DUPLICATE_PRICE_SIGMA = 0.04


MISSING_DESCRIPTION_RATE = 0.25


HTML_DESCRIPTION_RATE = 0.35


UNNUMBERED_BULLET_RATE = 0.03


NO_BULLETS_RATE = 0.02


UNIT_NONE_RATE = 0.02


RGB = tuple[int, int, int]


@dataclass(frozen=True)
class UnitSpec:
    """One measurement unit: size in base units (oz or count), item-name spellings, raw `Unit:` spellings."""

    to_base: float
    name_spellings: tuple[str, ...]
    unit_spellings: tuple[str, ...]


UNITS: dict[str, UnitSpec] = {
    "oz": UnitSpec(1.0, ("Ounce", "oz", "Oz"), ("Ounce", "ounce", "oz")),
    "fl oz": UnitSpec(1.0, ("Fl Oz", "fl oz", "Fluid Ounce"), ("Fl Oz", "Fluid Ounce", "fl oz")),
    "lb": UnitSpec(16.0, ("lb", "Pound", "lbs"), ("Pound", "lb")),
    "g": UnitSpec(1 / 28.3495, ("g", "Gram"), ("Gram", "grams")),
    "kg": UnitSpec(35.274, ("kg", "Kilogram"), ("Kilogram", "kg")),
    "ml": UnitSpec(1 / 29.5735, ("ml", "mL"), ("ml",)),
    "l": UnitSpec(33.814, ("Liter", "L"), ("Liter",)),
    "count": UnitSpec(1.0, ("Count", "Ct"), ("Count", "count")),
}


@dataclass(frozen=True)
class Category:
    """A product category: price base, sizes, text phrases and image look."""

    nouns: tuple[str, ...]  # product names; unique to the category (tests map item names back with them)
    sizes: tuple[tuple[float, str], ...]  # (amount, US unit key) of one unit; some listings restate in metric
    unit_price: float  # USD per base unit (oz or count) at the reference quantity
    reference_qty: float  # base units
    elasticity: float  # d log(price) / d log(total quantity)
    multipack_rate: float  # probability that a listing is a pack of several units
    food: bool
    bullets: tuple[str, ...]
    descriptions: tuple[str, ...]
    shape: str  # bottle, jar, box, bag or can
    palette: tuple[RGB, ...]  # body colours (never gold or black: those mean premium packaging)


CATEGORIES: dict[str, Category] = {
    "olive oil": Category(
        nouns=("Extra Virgin Olive Oil", "Pure Olive Oil", "Light Tasting Olive Oil"),
        sizes=((16.9, "fl oz"), (25.5, "fl oz"), (33.8, "fl oz"), (50.7, "fl oz"), (68.0, "fl oz")),
        unit_price=0.55,
        reference_qty=25.5,
        elasticity=0.75,
        multipack_rate=0.25,
        food=True,
        bullets=(
            "Cold pressed from hand-picked olives",
            "Rich, fruity flavor with a peppery finish",
            "Ideal for salads, dipping and sauteing",
            "First cold extraction within hours of harvest",
            "Dark glass bottle protects freshness",
            "High in monounsaturated fats",
        ),
        descriptions=(
            "Rich and fruity olive oil for everyday cooking.",
            "Imported from Italy.",
            "Pressed from a blend of Mediterranean olives.",
        ),
        shape="bottle",
        palette=((46, 94, 40), (86, 120, 34), (30, 70, 50)),
    ),
    "coffee": Category(
        nouns=("Whole Bean Coffee", "Ground Coffee", "Espresso Roast Coffee"),
        sizes=((10.0, "oz"), (12.0, "oz"), (20.0, "oz"), (32.0, "oz"), (2.0, "lb")),
        unit_price=0.9,
        reference_qty=12.0,
        elasticity=0.7,
        multipack_rate=0.25,
        food=True,
        bullets=(
            "Medium roast with notes of chocolate and caramel",
            "100% Arabica beans",
            "Roasted and packed in small batches",
            "Smooth, balanced and never bitter",
            "Works with drip, pour-over and French press",
            "Resealable bag keeps beans fresh",
        ),
        descriptions=(
            "A smooth, full-bodied roast for your morning cup.",
            "Sourced from high-altitude farms in Central America.",
            "Roasted to bring out a sweet, chocolatey finish.",
        ),
        shape="bag",
        palette=((92, 58, 36), (60, 40, 30), (140, 90, 50)),
    ),
    "snacks": Category(
        nouns=("Kettle Cooked Potato Chips", "Trail Mix", "Sourdough Pretzels"),
        sizes=((1.0, "oz"), (1.5, "oz"), (7.0, "oz"), (10.0, "oz"), (16.0, "oz")),
        unit_price=0.6,
        reference_qty=8.0,
        elasticity=0.65,
        multipack_rate=0.55,
        food=True,
        bullets=(
            "Crunchy, satisfying snack for lunch boxes",
            "Individually wrapped single-serve bags",
            "No artificial flavors or preservatives",
            "Perfect for work, school and travel",
            "Made with simple ingredients",
            "Great for parties and game day",
        ),
        descriptions=(
            "A crunchy snack made with simple ingredients.",
            "Perfect for sharing, or not.",
            "Cooked in small batches for extra crunch.",
        ),
        shape="bag",
        palette=((200, 50, 40), (230, 120, 30), (180, 30, 90)),
    ),
    "spices": Category(
        nouns=("Ground Cinnamon", "Smoked Paprika", "Black Peppercorns"),
        sizes=((1.5, "oz"), (2.0, "oz"), (2.5, "oz"), (4.0, "oz"), (16.0, "oz")),
        unit_price=2.4,
        reference_qty=2.5,
        elasticity=0.6,
        multipack_rate=0.2,
        food=True,
        bullets=(
            "Bold aroma and flavor",
            "Finely ground for even seasoning",
            "Packed in a shaker jar",
            "Essential for baking, rubs and marinades",
            "Kosher certified",
            "Freshness sealed",
        ),
        descriptions=(
            "A pantry staple with a warm, bold flavor.",
            "Carefully sourced and ground for freshness.",
            "Adds depth to sweet and savory dishes.",
        ),
        shape="jar",
        palette=((150, 60, 30), (120, 40, 40), (60, 90, 60)),
    ),
    "tea": Category(
        nouns=("Green Tea Bags", "English Breakfast Black Tea", "Chamomile Herbal Tea"),
        sizes=((16.0, "count"), (20.0, "count"), (40.0, "count"), (100.0, "count")),
        unit_price=0.25,
        reference_qty=20.0,
        elasticity=0.7,
        multipack_rate=0.4,
        food=True,
        bullets=(
            "Individually wrapped tea bags",
            "Naturally caffeine free",
            "Steep 3 to 5 minutes for best flavor",
            "Enjoy hot or iced",
            "Whole leaf blend",
            "Compostable tea bags",
        ),
        descriptions=(
            "A soothing cup for any time of day.",
            "Blended from whole leaves for a full flavor.",
            "Carefully sourced from estate gardens.",
        ),
        shape="box",
        palette=((40, 110, 80), (140, 30, 50), (50, 70, 140)),
    ),
    "pasta sauce": Category(
        nouns=("Marinara Sauce", "Tomato Basil Pasta Sauce", "Arrabbiata Sauce"),
        sizes=((15.0, "oz"), (24.0, "oz"), (26.0, "oz"), (32.0, "oz")),
        unit_price=0.25,
        reference_qty=24.0,
        elasticity=0.75,
        multipack_rate=0.3,
        food=True,
        bullets=(
            "Made with vine-ripened tomatoes",
            "Slow simmered for rich flavor",
            "No added sugar",
            "Ready to heat and serve",
            "Made with extra virgin olive oil",
            "Family recipe",
        ),
        descriptions=(
            "A classic sauce made from vine-ripened tomatoes.",
            "Slow cooked with garlic and fresh basil.",
            "Perfect on pasta, pizza and more.",
        ),
        shape="jar",
        palette=((170, 30, 30), (200, 70, 40), (120, 20, 30)),
    ),
    "pet food": Category(
        nouns=("Dry Dog Food", "Grain Free Dry Cat Food", "Puppy Formula Dog Food"),
        sizes=((3.0, "lb"), (5.0, "lb"), (15.0, "lb"), (24.0, "lb"), (30.0, "lb")),
        unit_price=0.275,
        reference_qty=80.0,
        elasticity=0.7,
        multipack_rate=0.3,
        food=False,
        bullets=(
            "Real meat is the first ingredient",
            "Complete and balanced nutrition",
            "Supports healthy digestion",
            "No corn, wheat or soy",
            "Crunchy kibble helps clean teeth",
            "Made without artificial colors",
        ),
        descriptions=(
            "Complete nutrition your pet will love.",
            "Made with real meat and wholesome grains.",
            "Formulated with veterinarians.",
        ),
        shape="bag",
        palette=((40, 80, 160), (200, 90, 30), (60, 130, 60)),
    ),
    "vitamins": Category(
        nouns=("Vitamin D3 Softgels", "Multivitamin Gummies", "Magnesium Glycinate Capsules"),
        sizes=((60.0, "count"), (90.0, "count"), (120.0, "count"), (240.0, "count"), (365.0, "count")),
        unit_price=0.18,
        reference_qty=90.0,
        elasticity=0.6,
        multipack_rate=0.15,
        food=False,
        bullets=(
            "Supports immune health",
            "One daily serving",
            "Third-party tested for purity",
            "Easy to swallow",
            "No artificial colors or flavors",
            "Made in a GMP certified facility",
        ),
        descriptions=(
            "A daily supplement to support your wellness routine.",
            "Formulated for optimal absorption.",
            "These statements have not been evaluated by the FDA.",
        ),
        shape="bottle",
        palette=((230, 120, 40), (40, 120, 190), (200, 60, 90)),
    ),
    "candles": Category(
        nouns=("Scented Jar Candle", "Soy Wax Candle", "Three Wick Candle"),
        sizes=((3.5, "oz"), (7.0, "oz"), (14.5, "oz"), (22.0, "oz")),
        unit_price=1.65,
        reference_qty=14.5,
        elasticity=0.7,
        multipack_rate=0.15,
        food=False,
        bullets=(
            "Long lasting burn time",
            "Cotton wick for a clean burn",
            "Hand poured",
            "Fills the room with fragrance",
            "Makes a thoughtful gift",
            "Reusable glass jar",
        ),
        descriptions=(
            "A warm, inviting fragrance for any room.",
            "Hand poured with a cotton wick.",
            "Notes of vanilla, cedar and amber.",
        ),
        shape="jar",
        palette=((180, 120, 170), (120, 160, 190), (210, 180, 150)),
    ),
    "shampoo": Category(
        nouns=("Moisturizing Shampoo", "Clarifying Shampoo", "Volumizing Shampoo"),
        sizes=((8.5, "fl oz"), (12.0, "fl oz"), (16.9, "fl oz"), (28.0, "fl oz"), (33.8, "fl oz")),
        unit_price=0.8,
        reference_qty=13.5,
        elasticity=0.65,
        multipack_rate=0.2,
        food=False,
        bullets=(
            "Gently cleanses without stripping",
            "Sulfate free formula",
            "Safe for color treated hair",
            "Light, fresh scent",
            "Adds shine and softness",
            "Suitable for all hair types",
        ),
        descriptions=(
            "A gentle shampoo for healthy looking hair.",
            "Formulated with plant-based cleansers.",
            "Leaves hair soft, shiny and manageable.",
        ),
        shape="bottle",
        palette=((60, 150, 190), (150, 80, 170), (90, 170, 120)),
    ),
    "sparkling water": Category(
        nouns=("Sparkling Water", "Lime Seltzer Water", "Sparkling Mineral Water"),
        sizes=((8.0, "fl oz"), (12.0, "fl oz"), (16.9, "fl oz")),
        unit_price=0.0625,
        reference_qty=96.0,
        elasticity=0.8,
        multipack_rate=0.85,
        food=True,
        bullets=(
            "Zero calories and zero sweeteners",
            "Crisp, refreshing bubbles",
            "Naturally flavored",
            "Great for mixing",
            "Recyclable cans",
            "Serve chilled",
        ),
        descriptions=(
            "Crisp, refreshing and naturally flavored.",
            "Nothing artificial, just bubbles.",
            "A refreshing alternative to soda.",
        ),
        shape="can",
        palette=((60, 160, 200), (200, 60, 60), (120, 190, 80)),
    ),
    "cereal": Category(
        nouns=("Honey Almond Granola", "Whole Grain Oat Cereal", "Frosted Wheat Squares"),
        sizes=((11.0, "oz"), (12.0, "oz"), (18.0, "oz"), (24.0, "oz")),
        unit_price=0.42,
        reference_qty=12.0,
        elasticity=0.7,
        multipack_rate=0.3,
        food=True,
        bullets=(
            "Good source of fiber",
            "Made with whole grains",
            "Delicious with milk or yogurt",
            "Crunchy clusters",
            "A wholesome start to the day",
            "No high fructose corn syrup",
        ),
        descriptions=(
            "A wholesome breakfast made with whole grains.",
            "Lightly sweetened and perfectly crunchy.",
            "Enjoy with milk, yogurt or straight from the box.",
        ),
        shape="box",
        palette=((210, 90, 40), (80, 60, 160), (40, 140, 170)),
    ),
    "honey": Category(
        nouns=("Raw Wildflower Honey", "Clover Honey", "Manuka Honey"),
        sizes=((8.0, "oz"), (12.0, "oz"), (16.0, "oz"), (32.0, "oz"), (3.0, "lb")),
        unit_price=0.75,
        reference_qty=16.0,
        elasticity=0.75,
        multipack_rate=0.15,
        food=True,
        bullets=(
            "Raw and unfiltered",
            "Sourced from local beekeepers",
            "Naturally sweet, nothing added",
            "Perfect for tea, toast and baking",
            "May crystallize naturally",
            "Squeeze-free pour spout",
        ),
        descriptions=(
            "Pure honey straight from the hive.",
            "Harvested from wildflower meadows.",
            "Naturally sweet with floral notes.",
        ),
        shape="jar",
        palette=((170, 100, 30), (150, 80, 20), (120, 70, 40)),
    ),
    "soup": Category(
        nouns=("Chicken Noodle Soup", "Tomato Bisque Soup", "Lentil Vegetable Soup"),
        sizes=((10.5, "oz"), (16.3, "oz"), (18.6, "oz"), (32.0, "oz")),
        unit_price=0.19,
        reference_qty=18.0,
        elasticity=0.75,
        multipack_rate=0.5,
        food=True,
        bullets=(
            "Ready to heat and eat",
            "Made with real vegetables",
            "Microwavable in minutes",
            "A hearty, comforting meal",
            "Good source of protein",
            "Easy open lid",
        ),
        descriptions=(
            "A hearty, comforting soup made with real ingredients.",
            "Simmered slowly for homemade taste.",
            "Ready in minutes.",
        ),
        shape="can",
        palette=((190, 40, 40), (225, 225, 215), (60, 100, 150)),
    ),
}


@dataclass(frozen=True)
class Brand:
    """A brand: log-price premium and how often it is listed."""

    premium: float
    weight: float


BRANDS: dict[str, Brand] = {
    "Valueway": Brand(-0.45, 3.0),
    "Basics Co.": Brand(-0.35, 3.0),
    "Everyday Pantry": Brand(-0.25, 3.0),
    "Harvest Lane": Brand(-0.10, 3.0),
    "Green Meadow": Brand(0.0, 3.0),
    "Sunvale": Brand(0.0, 3.0),
    "Blue Ridge Farms": Brand(0.05, 2.5),
    "Cedar & Pine": Brand(0.15, 2.0),
    "Golden Grove": Brand(0.20, 2.0),
    "Maison Verte": Brand(0.45, 1.2),
    "Alder Reserve": Brand(0.60, 0.8),
    "Aurelia Luxe": Brand(1.00, 0.4),
    "Noble Atelier": Brand(1.30, 0.25),
}


@dataclass(frozen=True)
class Keyword:
    """A claim in the item name with its log-price effect."""

    effect: float
    phrase: str
    bullet: str
    food_only: bool


KEYWORDS: dict[str, Keyword] = {
    "organic": Keyword(0.20, "Organic", "USDA certified organic", False),
    "gourmet": Keyword(0.30, "Gourmet", "Gourmet recipe crafted in small batches", True),
    "premium": Keyword(0.25, "Premium", "Premium quality ingredients", False),
    "artisan": Keyword(0.30, "Artisan", "Artisan made by skilled craftspeople", False),
    "imported": Keyword(0.15, "Imported", "Imported from Europe", True),
    "gluten-free": Keyword(0.10, "Gluten-Free", "Certified gluten-free", True),
    "non-gmo": Keyword(0.05, "Non-GMO", "Non-GMO Project verified", False),
    "bulk": Keyword(-0.15, "Bulk", "Bulk size for stocking up", False),
    "value pack": Keyword(-0.10, "Value Pack", "Value pack: more for less", False),
    "family size": Keyword(-0.05, "Family Size", "Family size for sharing", True),
}


METRIC_RATE = 0.12  # share of weight/volume listings stated in metric units


METRIC_OF: dict[str, tuple[str, str]] = {"oz": ("g", "kg"), "lb": ("g", "kg"), "fl oz": ("ml", "l")}


PACK_SIZES: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 24)


PACK_WEIGHTS: tuple[float, ...] = (0.25, 0.12, 0.15, 0.2, 0.08, 0.15, 0.05)


PACK_PHRASES: tuple[str, ...] = ("paren", "dash", "case")  # (Pack of 6) / 6-Pack / 6 per case


KEYWORD_COUNT_WEIGHTS: tuple[float, ...] = (0.45, 0.4, 0.15)  # 0, 1 or 2 keywords per listing


GENERIC_BULLETS: tuple[str, ...] = (
    "Satisfaction guaranteed",
    "Packaging may vary",
    "Ships in recyclable packaging",
    "Store in a cool, dry place",
)


SHAPES: tuple[str, ...] = ("bottle", "jar", "box", "bag", "can")


PREMIUM_BODY: RGB = (22, 20, 18)


PREMIUM_GOLD: RGB = (212, 175, 55)


PREMIUM_GLOSS: RGB = (110, 108, 104)


LABEL_COLOUR: RGB = (245, 240, 228)


INK_COLOUR: RGB = (30, 30, 30)
