"""The embedded demo competition: 2025 schema, portable links, determinism, realism, signal, reruns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amzkit.app.demo import MARKER_NAME, TALL_IMAGE_RATIO, DemoFiles, make_demo
from amzkit.app.demo_catalog import BRANDS, CATEGORIES, KEYWORDS, SHAPES

N_TRAIN, N_TEST, IMAGE_PX = 600, 200, 224
PACK_PHRASE = re.compile(r"\(Pack of \d+\)|\b\d+-Pack\b|\b\d+ per case\b")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    out = tmp_path_factory.mktemp("demo")
    return make_demo(out, n_train=N_TRAIN, n_test=N_TEST, seed=0, image_px=IMAGE_PX)


@pytest.fixture(scope="module")
def train(demo: DemoFiles) -> pd.DataFrame:
    return pd.read_csv(demo.train_csv)


@pytest.fixture(scope="module")
def test_frame(demo: DemoFiles) -> pd.DataFrame:
    return pd.read_csv(demo.test_csv)


def item_name(catalog_content: str) -> str:
    first = catalog_content.split("\n", 1)[0]
    assert first.startswith("Item Name: ")
    return first.removeprefix("Item Name: ")


def category_of(catalog_content: str) -> str:
    """The category whose product noun appears in the item name (exactly one must match)."""
    name = item_name(catalog_content)
    hits = [key for key in sorted(CATEGORIES) if any(noun in name for noun in CATEGORIES[key].nouns)]
    assert len(hits) == 1, (name, hits)
    return hits[0]


def category_one_hot(texts: pd.Series) -> np.ndarray:
    keys = sorted(CATEGORIES)
    return np.array([[category_of(text) == key for key in keys] for text in texts], dtype=float)


def residual(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    return target - design @ coefficients


def r_squared(design: np.ndarray, target: np.ndarray) -> float:
    return 1.0 - residual(design, target).var() / target.var()


def files_under(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*")) if path.is_file()]


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in files_under(root)}


def file_mtimes(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in files_under(root)}


def test_tables_cover_categories_brands_keywords() -> None:
    assert len(CATEGORIES) >= 10
    assert {category.shape for category in CATEGORIES.values()} == set(SHAPES)
    nouns = [(key, noun) for key, category in CATEGORIES.items() for noun in category.nouns]
    for key, noun in nouns:  # nouns identify their category unambiguously
        assert not any(noun in other for other_key, other in nouns if other_key != key), noun
    for category in CATEGORIES.values():
        assert 0.6 <= category.elasticity <= 0.8
        assert category.palette and category.bullets and category.sizes
    premiums = [brand.premium for brand in BRANDS.values()]
    assert min(premiums) < -0.3 and max(premiums) > 0.8  # budget ... luxury
    assert KEYWORDS["organic"].effect > 0 and KEYWORDS["gourmet"].effect > 0 and KEYWORDS["bulk"].effect < 0


def test_schema_columns_dtypes_and_ids(
    demo: DemoFiles, train: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    solution = pd.read_csv(demo.solution_csv)
    assert list(train.columns) == ["sample_id", "catalog_content", "image_link", "price"]
    assert list(test_frame.columns) == ["sample_id", "catalog_content", "image_link"]
    assert list(solution.columns) == ["sample_id", "price"]
    assert (len(train), len(test_frame), len(solution)) == (N_TRAIN, N_TEST, N_TEST)
    for frame in (train, test_frame, solution):
        assert pd.api.types.is_integer_dtype(frame["sample_id"])
    for frame in (train, test_frame):
        assert pd.api.types.is_string_dtype(frame["catalog_content"])
        assert pd.api.types.is_string_dtype(frame["image_link"])
    assert pd.api.types.is_float_dtype(train["price"]) and pd.api.types.is_float_dtype(solution["price"])
    assert train["sample_id"].is_unique and test_frame["sample_id"].is_unique
    assert not set(train["sample_id"]) & set(test_frame["sample_id"])
    assert solution["sample_id"].tolist() == test_frame["sample_id"].tolist()
    all_ids = pd.concat([train["sample_id"], test_frame["sample_id"]])
    assert all_ids.between(10_000, 999_999).all()
    assert not train["sample_id"].is_monotonic_increasing  # real files are not sorted by id


def test_image_links_are_relative_readable_jpegs(
    demo: DemoFiles, train: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    folder = demo.train_csv.parent
    assert str(folder) not in demo.train_csv.read_text() + demo.test_csv.read_text()
    tall_height = round(IMAGE_PX * TALL_IMAGE_RATIO)
    heights = []
    for link in pd.concat([train["image_link"], test_frame["image_link"]]):
        assert not Path(link).is_absolute() and re.fullmatch(r"images/\d+\.jpg", link), link
        with Image.open(folder / link) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.width == IMAGE_PX and image.height in (IMAGE_PX, tall_height)
            heights.append(image.height)
    assert set(heights) == {IMAGE_PX, tall_height}  # aspect ratio varies, as in real listings
    assert train["image_link"].tolist() == [f"images/{i}.jpg" for i in train["sample_id"]]
    assert demo.images_dir == folder / "images"
    assert len(list(demo.images_dir.glob("*.jpg"))) == N_TRAIN + N_TEST


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    first = make_demo(tmp_path / "a", n_train=80, n_test=30, seed=7, image_px=64)
    second = make_demo(tmp_path / "b", n_train=80, n_test=30, seed=7, image_px=64)
    other = make_demo(tmp_path / "c", n_train=80, n_test=30, seed=8, image_px=64)
    first_files = file_bytes(tmp_path / "a")
    assert len(first_files) == 80 + 30 + 4  # three CSVs, the marker and the images
    assert first_files == file_bytes(tmp_path / "b")
    assert first.train_csv.read_bytes() != other.train_csv.read_bytes()
    assert second.solution_csv.read_bytes() != other.solution_csv.read_bytes()


def test_prices_look_like_the_real_competition(demo: DemoFiles, train: pd.DataFrame) -> None:
    prices = pd.concat([train["price"], pd.read_csv(demo.solution_csv)["price"]])
    assert (prices > 0).all() and prices.notna().all()
    assert 8 <= prices.median() <= 25
    assert prices.quantile(0.95) / prices.median() > 3  # heavy right tail
    assert prices.mean() > prices.median()


def test_catalog_text_follows_the_2025_format(train: pd.DataFrame, test_frame: pd.DataFrame) -> None:
    texts = pd.concat([train["catalog_content"], test_frame["catalog_content"]])
    for text in texts:
        lines = text.split("\n")
        assert lines[0].startswith("Item Name: ")
        assert sum(line.startswith("Value: ") for line in lines) == 1
        assert lines[-1].startswith("Unit: ")
        value = next(line for line in lines if line.startswith("Value: ")).removeprefix("Value: ")
        assert float(value) > 0
    units = texts.str.extract(r"\nUnit: (.*)$")[0]
    assert units.nunique() >= 3 and (units == "None").any()
    assert {"Ounce", "oz", "Count", "Fl Oz"} <= set(units)
    names = texts.map(item_name)
    assert names.str.contains(PACK_PHRASE).mean() >= 0.10
    assert texts.str.contains(r"\nBullet Point 1: ").mean() > 0.8
    assert texts.str.contains(r"\nBullet Point: ").any()  # unnumbered bullet
    assert (~texts.str.contains("Product Description: ")).mean() > 0.05  # description sometimes missing
    assert texts.str.contains(r"Product Description: <p>.*<br>", regex=True).any()  # sometimes HTML


def test_train_has_near_duplicate_listings(train: pd.DataFrame) -> None:
    frame = train.assign(name=train["catalog_content"].map(item_name))
    close_pairs = 0
    for _, group in frame.groupby("name"):
        prices = np.sort(group["price"].to_numpy())
        close_pairs += int(np.sum(prices[1:] / prices[:-1] < 1.2))
    assert close_pairs >= round(0.02 * N_TRAIN)


def test_log_price_follows_log_value_within_category(train: pd.DataFrame) -> None:
    log_price = np.log(train["price"].to_numpy())
    values = train["catalog_content"].str.extract(r"\nValue: ([0-9.]+)")[0].astype(float)
    log_value = np.log(values.to_numpy())
    categories = category_one_hot(train["catalog_content"])
    within = np.corrcoef(residual(categories, log_value), residual(categories, log_price))[0, 1]
    assert within > 0.3
    assert np.corrcoef(log_value, log_price)[0, 1] > 0.2


def test_images_explain_price_beyond_category(demo: DemoFiles, train: pd.DataFrame) -> None:
    log_price = np.log(train["price"].to_numpy())
    categories = category_one_hot(train["catalog_content"])
    colour_stats = []
    for link in train["image_link"]:
        with Image.open(demo.train_csv.parent / link) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3) / 255.0
        colour_stats.append(np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)]))
    with_images = r_squared(np.hstack([categories, np.array(colour_stats)]), log_price)
    assert with_images - r_squared(categories, log_price) > 0.02


def test_gold_packaging_images_sell_higher(demo: DemoFiles, train: pd.DataFrame) -> None:
    """The premium-packaging latent (black body, gold label) lifts price; only the pixels show it."""
    gold_share = []
    for link in train["image_link"]:
        with Image.open(demo.train_csv.parent / link) as image:
            red, green, blue = np.asarray(image.convert("RGB"), dtype=int).reshape(-1, 3).T
        gold_share.append(np.mean((red > 170) & (green > 130) & (blue < 110)))
    gold = np.array(gold_share) > 0.02
    assert 0.1 < gold.mean() < 0.35
    within_category = residual(category_one_hot(train["catalog_content"]), np.log(train["price"].to_numpy()))
    assert within_category[gold].mean() - within_category[~gold].mean() > 0.2


def test_rerun_is_skipped_and_changes_regenerate(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    files = make_demo(out, n_train=60, n_test=20, seed=3, image_px=48)
    before = file_mtimes(out)
    assert (out / MARKER_NAME).is_file()
    assert make_demo(str(out), n_train=60, n_test=20, seed=3, image_px=48) == files
    assert file_mtimes(out) == before

    make_demo(out, n_train=60, n_test=25, seed=3, image_px=48)
    after = file_mtimes(out)
    assert after["test.csv"] != before["test.csv"] and after[MARKER_NAME] != before[MARKER_NAME]
    assert len(pd.read_csv(files.test_csv)) == 25
    assert len(list(files.images_dir.glob("*.jpg"))) == 60 + 25  # images of the earlier run removed


def test_incomplete_output_is_regenerated(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    files = make_demo(out, n_train=40, n_test=10, seed=1, image_px=40)
    expected = file_bytes(out)
    first_image = files.images_dir / pd.read_csv(files.test_csv)["image_link"].iloc[0].removeprefix("images/")
    first_image.unlink()
    (out / ".train.csv.999.tmp").write_text("half a file")  # debris of a killed run
    make_demo(out, n_train=40, n_test=10, seed=1, image_px=40)
    assert file_bytes(out) == expected


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_train"):
        make_demo(tmp_path, n_train=0)
    with pytest.raises(ValueError, match="image_px"):
        make_demo(tmp_path, image_px=8)


def test_the_demo_never_overwrites_a_folder_of_the_users_data(tmp_path: Path) -> None:
    """-p data_dir demo writes <work_dir>/data: a user's train.csv there (and images/<id>.jpg) must survive."""
    out = tmp_path / "data"
    (out / "images").mkdir(parents=True)
    (out / "train.csv").write_text("sample_id,catalog_content,image_link,price\n1,mine,images/1.jpg,5.0\n")
    (out / "images" / "1.jpg").write_bytes(b"my picture")
    with pytest.raises(FileExistsError, match=r"train.csv and images/ that the demo did not write.*-p work_dir"):
        make_demo(out, n_train=20, n_test=5, seed=1, image_px=40)
    assert (out / "train.csv").read_text().splitlines()[1] == "1,mine,images/1.jpg,5.0"
    assert (out / "images" / "1.jpg").read_bytes() == b"my picture"


def test_the_demo_never_deletes_pictures_in_a_folder_it_did_not_write(tmp_path: Path) -> None:
    """The user's pictures copied into <work_dir>/data/images before their CSVs: the demo deleted every <digits>.jpg
    it had not made (only train.csv / test.csv were checked)."""
    out = tmp_path / "data"
    (out / "images").mkdir(parents=True)
    (out / "images" / "123456.jpg").write_bytes(b"my picture")
    with pytest.raises(FileExistsError, match=r"images/ that the demo did not write"):
        make_demo(out, n_train=20, n_test=5, seed=1, image_px=40)
    assert (out / "images" / "123456.jpg").read_bytes() == b"my picture"
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    assert len(pd.read_csv(make_demo(empty, n_train=20, n_test=5, seed=1, image_px=40).train_csv)) == 20


def test_a_regeneration_killed_half_way_is_still_the_demos_folder(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "demo"
    make_demo(out, n_train=20, n_test=5, seed=1, image_px=40)
    import amzkit.app.demo as demo

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_render", killed)
    with pytest.raises(KeyboardInterrupt):
        make_demo(out, n_train=20, n_test=6, seed=1, image_px=40)  # other parameters: regenerated, then killed
    monkeypatch.undo()
    files = make_demo(out, n_train=20, n_test=6, seed=1, image_px=40)  # not taken for the user's data, finished
    assert len(pd.read_csv(files.test_csv)) == 6
    assert make_demo(out, n_train=20, n_test=6, seed=1, image_px=40) == files


def test_the_users_data_copied_into_a_demo_folder_is_not_overwritten(tmp_path: Path) -> None:
    """A folder a demo once wrote keeps its marker: train.csv / test.csv put there later are the user's."""
    out = tmp_path / "data"
    make_demo(out, n_train=20, n_test=5, seed=1, image_px=40)
    mine = "sample_id,catalog_content,image_link,price\n1,mine,https://m.media-amazon.com/images/I/1.jpg,5.0\n"
    (out / "train.csv").write_text(mine)
    (out / "images" / "123456.jpg").write_bytes(b"my picture")
    with pytest.raises(FileExistsError, match=r"train.csv that the demo did not write"):
        make_demo(out, n_train=20, n_test=5, seed=1, image_px=40)
    assert (out / "train.csv").read_text() == mine
    assert (out / "images" / "123456.jpg").read_bytes() == b"my picture"
