"""Leak detection: planted train/test twins are found with the right kind and price; no self-reading features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amzkit.images import hashes
from amzkit.images.hashes import dhash, hamming
from amzkit.ml.encodings import TWIN_THRESHOLD, TwinPriceTransform
from amzkit.stages import leaks
from amzkit.stages.leaks import duplicate_report, summarize_report
from amzkit.text import similarity

N_TRAIN, N_DISTINCT_TEST = 200, 30
# Planted test copies: (kind, how many); each takes the next train rows as sources.
PLANTED = (("exact_name", 5), ("text", 5), ("image_url", 5), ("image_hash", 5))


def _words(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, 7)) for _ in range(n)]


def _catalog(name: str, bullet: str) -> str:
    return f"Item Name: {name}\nBullet Point 1: {bullet}\nValue: 12.0\nUnit: Ounce"


def _image(path, rng: np.random.Generator) -> str:
    """A smooth random picture (8x8 random blocks, upscaled): distinct pictures get unrelated dHashes."""
    cells = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(cells).resize((96, 96), Image.Resampling.BILINEAR).save(path, format="JPEG", quality=92)
    return str(path)


def _resaved(source: str, path) -> str:
    """The same picture resized and re-encoded at a lower quality."""
    with Image.open(source) as img:
        img.convert("RGB").resize((77, 77), Image.Resampling.BICUBIC).save(path, format="JPEG", quality=70)
    return str(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """200 distinct train products; test = 20 planted copies (5 per kind) + 30 distinct products."""
    folder = tmp_path_factory.mktemp("leaks")
    rng = np.random.default_rng(0)
    vocabulary = _words(rng, 3000)
    n_test = sum(n for _, n in PLANTED) + N_DISTINCT_TEST
    products = [(" ".join(rng.choice(vocabulary, 4, replace=False)), " ".join(rng.choice(vocabulary, 30)))
                for _ in range(N_TRAIN + n_test)]
    paths = [_image(folder / f"img_{i}.jpg", rng) for i in range(N_TRAIN + n_test)]
    prices = np.round(np.exp(rng.normal(2.7, 0.8, N_TRAIN)), 2)
    train = pd.DataFrame({"sample_id": np.arange(N_TRAIN), "price": prices,
                          "catalog_content": [_catalog(*p) for p in products[:N_TRAIN]],
                          "image_link": [f"https://img.example/{i}.jpg" for i in range(N_TRAIN)]})
    test_rows, test_paths, expected, source = [], [], [], 0
    for kind, count in PLANTED:
        for _ in range(count):
            own = N_TRAIN + len(test_rows)  # the test row's own (distinct) product, image and link
            name, bullet = products[source]
            link, path = f"https://img.example/{own}.jpg", paths[own]
            if kind == "exact_name":  # changed case and punctuation, another description
                text = _catalog(name.upper().replace(" ", ", ") + "!", products[own][1])
            elif kind == "text":  # one word of the name changed
                text = _catalog(" ".join([*name.split()[:-1], vocabulary[-1 - source]]), bullet)
            else:
                text = _catalog(*products[own])
                if kind == "image_url":
                    link = train["image_link"][source]
                else:
                    path = _resaved(paths[source], folder / f"copy_{source}.jpg")
            test_rows.append((text, link))
            test_paths.append(path)
            expected.append((kind, source))
            source += 1
    for _ in range(N_DISTINCT_TEST):
        own = N_TRAIN + len(test_rows)
        test_rows.append((_catalog(*products[own]), f"https://img.example/{own}.jpg"))
        test_paths.append(paths[own])
        expected.append(("none", -1))
    test = pd.DataFrame({"sample_id": 10_000 + np.arange(n_test), "catalog_content": [t for t, _ in test_rows],
                         "image_link": [link for _, link in test_rows]})
    return {"train": train, "test": test, "image_paths": {"train": paths[:N_TRAIN], "test": test_paths},
            "expected": expected}


def _check_planted(report: pd.DataFrame, data: dict, kinds: tuple[str, ...]) -> None:
    train = data["train"]
    for row, (kind, source) in enumerate(data["expected"]):
        got = report.iloc[row]
        if kind in kinds:
            assert got["kind"] == kind, (row, got.to_dict())
            assert got["train_id"] == train["sample_id"][source]
            assert got["twin_price"] == pytest.approx(train["price"][source])
            assert 0 < got["similarity"] <= 1
        else:
            assert got["kind"] == "none", (row, got.to_dict())
            assert np.isnan(got["twin_price"]) and pd.isna(got["train_id"])


def test_planted_twins_are_found_with_kind_and_price(planted):
    report = duplicate_report(planted["train"], planted["test"], "amazon2025", planted["image_paths"])
    assert list(report.columns) == list(leaks.REPORT_COLUMNS)
    assert report["test_id"].tolist() == planted["test"]["sample_id"].tolist()
    _check_planted(report, planted, tuple(kind for kind, _ in PLANTED))
    summary = summarize_report(report)
    assert summary["by_kind"] == {**dict(PLANTED), "none": N_DISTINCT_TEST}
    assert summary["with_twin"] == 20 and summary["twin_share"] == pytest.approx(20 / 50)
    text_rows = report["kind"] == "text"
    assert (report.loc[text_rows, "similarity"] >= 0.9).all() and (report.loc[text_rows, "similarity"] < 1).all()
    # distinct products stay far below the threshold: the negatives are not borderline
    assert report.loc[report["kind"] == "none", "text_similarity"].max() < 0.5


def test_without_image_paths_only_hash_twins_are_missed(planted):
    report = duplicate_report(planted["train"], planted["test"], "amazon2025")
    _check_planted(report, planted, ("exact_name", "text", "image_url"))


def test_blocked_similarity_gives_the_same_report(planted, monkeypatch):
    whole = duplicate_report(planted["train"], planted["test"], "amazon2025", planted["image_paths"])
    monkeypatch.setattr(similarity, "BLOCK_CELLS", 7 * N_TRAIN)  # 7 query rows per block
    monkeypatch.setattr(hashes, "BLOCK_CELLS", 7 * N_TRAIN)
    blocked = duplicate_report(planted["train"], planted["test"], "amazon2025", planted["image_paths"])
    pd.testing.assert_frame_equal(whole, blocked, check_exact=False, atol=1e-5)


def test_a_stricter_text_threshold_drops_the_edited_copies(planted):
    report = duplicate_report(planted["train"], planted["test"], "amazon2025", text_threshold=0.9999)
    assert (report["kind"] == "text").sum() == 0


def test_dhash_and_hamming(planted, tmp_path):
    assert hamming(0b1011, 0b0001) == 2 and hamming(5, 5) == 0 and hamming(0, 2**64 - 1) == 64
    paths = planted["image_paths"]["train"]
    first = dhash(paths[0])
    assert isinstance(first, int) and 0 <= first < 2**64
    assert dhash(paths[0]) == first
    assert hamming(first, dhash(_resaved(paths[0], tmp_path / "copy.jpg"))) <= 4
    distances = [hamming(first, dhash(p)) for p in paths[1:50]]
    assert min(distances) > 10
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert dhash(str(tmp_path / "broken.jpg")) is None
    assert dhash(str(tmp_path / "absent.jpg")) is None and dhash(None) is None


# --- TwinPriceTransform ----------------------------------------------------------------------------------

N_PRODUCTS = 60


@pytest.fixture(scope="module")
def copies():
    """Every product twice (the copy upper-cased); a unique random price per row; rows 0..99 train, 100.. test."""
    rng = np.random.default_rng(1)
    vocabulary = _words(rng, 1500)
    texts = [_catalog(" ".join(rng.choice(vocabulary, 4)), " ".join(rng.choice(vocabulary, 20)))
             for _ in range(N_PRODUCTS)]
    order = rng.permutation(2 * N_PRODUCTS)
    stacked = [texts[i % N_PRODUCTS] if i < N_PRODUCTS else texts[i % N_PRODUCTS].upper() for i in order]
    product = order % N_PRODUCTS
    prices = rng.permutation(np.arange(1, 2 * N_PRODUCTS + 1)) * 1.37
    return {"texts": stacked, "product": product, "prices": prices, "train": np.arange(100),
            "other": np.arange(100, 2 * N_PRODUCTS)}


def _copy_row(product: np.ndarray, row: int) -> int:
    return int(np.flatnonzero((product == product[row]) & (np.arange(len(product)) != row))[0])


def test_twin_price_never_reads_a_training_rows_own_label(copies):
    train, prices, product = copies["train"], copies["prices"], copies["product"]
    transform = TwinPriceTransform(copies["texts"])
    assert transform.names == ["twin_log_price", "twin_similarity"]
    out = transform.fit(train, prices[train]).transform(train)
    assert out.shape == (len(train), 2) and out.dtype == np.float32
    own = np.log1p(prices[train])
    assert not np.isclose(out[:, 0], own).any()  # a self-match would make every row equal its own label
    for i, row in enumerate(train.tolist()):  # rows whose copy is in training read that copy's price
        twin = _copy_row(product, row)
        if twin in set(train.tolist()):
            assert out[i, 0] == pytest.approx(np.log1p(prices[twin]), rel=1e-5)
            assert out[i, 1] == pytest.approx(1.0, abs=1e-4)


def test_twin_price_with_groups_never_reads_a_copy_of_the_same_product(copies):
    train, prices = copies["train"], copies["prices"]
    transform = TwinPriceTransform(copies["texts"], threshold=0.9, groups=copies["product"])
    out = transform.fit(train, prices[train]).transform(train)
    assert np.isnan(out[:, 0]).all()  # the only twin of each row is in its own group
    assert (out[:, 1] < 0.9).all()
    # rows outside the training fold search every training row, copies included
    other = copies["other"]
    fresh = transform.transform(other)
    for i, row in enumerate(other.tolist()):
        twin = _copy_row(copies["product"], row)
        if twin < 100:
            assert fresh[i, 0] == pytest.approx(np.log1p(prices[twin]), rel=1e-5)
        else:
            assert np.isnan(fresh[i, 0])
    assert transform.transform(np.array([5, 110, 5]))[0] == pytest.approx(out[5], nan_ok=True)


def test_twin_price_refits_per_fold(copies):
    prices = copies["prices"]
    transform = TwinPriceTransform(copies["texts"])
    first = transform.fit(np.arange(60), prices[:60]).transform(np.arange(60, 120))
    second = transform.fit(np.arange(60, 120), prices[60:]).transform(np.arange(60))
    assert transform.transform(np.arange(60, 120)).shape == (60, 2)
    assert np.isfinite(first[:, 1]).all() and np.isfinite(second[:, 1]).all()
    with pytest.raises(ValueError, match="groups"):
        TwinPriceTransform(copies["texts"], groups=np.zeros(3))


def test_a_generic_picture_is_no_twin_but_copies_of_one_product_still_are(tmp_path):
    """A pack shot shared by many train products says nothing; one product listed 5 times does."""
    rng = np.random.default_rng(7)
    generic = _image(tmp_path / "generic.jpg", rng)
    repeated = _image(tmp_path / "repeated.jpg", rng)
    words = _words(rng, 400)
    names = [" ".join(words[4 * i:4 * i + 4]) for i in range(60)]
    train_paths = [generic] * 10 + [repeated] * 5 + [_image(tmp_path / f"t{i}.jpg", rng) for i in range(15, 60)]
    train_names = names[:10] + [names[10]] * 5 + names[15:60]  # rows 10-14: one product listed five times
    train = pd.DataFrame({"sample_id": np.arange(60), "price": np.arange(60) + 1.0, "image_link": "",
                          "catalog_content": [_catalog(n, "x") for n in train_names]})
    test = pd.DataFrame({"sample_id": [100, 101], "image_link": "",
                         "catalog_content": [_catalog("fresh product one", "y"), _catalog("fresh product two", "z")]})
    test_paths = [_resaved(generic, tmp_path / "g2.jpg"), _resaved(repeated, tmp_path / "r2.jpg")]
    report = duplicate_report(train, test, "amazon2025", {"train": train_paths, "test": test_paths})
    assert report["kind"].tolist() == ["none", "image_hash"]
    assert 10 <= report["train_id"].iloc[1] <= 14
    loose = duplicate_report(train, test, "amazon2025", {"train": train_paths, "test": test_paths},
                             max_hash_matches=100)
    assert loose["kind"].tolist() == ["image_hash", "image_hash"]  # the guard is what keeps the first out


def test_an_image_link_on_many_products_pages_is_no_twin_but_one_products_copies_still_are():
    names = [f"product {word}" for word in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")]
    links = ["shared.jpg"] * 5 + ["own.jpg"] * 2  # one picture on 5 products' pages; one product listed twice
    train = pd.DataFrame({"sample_id": np.arange(7), "price": [6.5, 40.0, 12.0, 30.0, 9.0, 15.0, 15.5],
                          "image_link": links,
                          "catalog_content": [_catalog(n, "x") for n in names[:5] + [names[5]] * 2]})
    test = pd.DataFrame({"sample_id": [100, 101], "image_link": ["shared.jpg", "own.jpg"],
                         "catalog_content": [_catalog("fresh thing one", "y"), _catalog("fresh thing two", "z")]})
    report = duplicate_report(train, test, "amazon2025")
    assert report["kind"].tolist() == ["none", "image_url"] and report["twin_price"].iloc[1] == 15.0
    loose = duplicate_report(train, test, "amazon2025", max_hash_matches=6)  # 5 train products + the test one
    assert loose["kind"].tolist() == ["image_url", "image_url"]  # the guard is what keeps the first out


def test_the_same_shape_in_another_colour_is_no_twin(tmp_path):
    """dHash sees only grayscale gradients: a recoloured pack shot hashes alike, its mean colour tells them apart."""
    rng = np.random.default_rng(11)
    source = _image(tmp_path / "red.jpg", rng)
    with Image.open(source) as img:
        shifted = np.clip(np.asarray(img, dtype=np.int16) + np.array([60, 60, 60]), 0, 255).astype(np.uint8)
    Image.fromarray(shifted).save(tmp_path / "lighter.jpg", quality=92)
    assert hamming(dhash(source), dhash(str(tmp_path / "lighter.jpg"))) <= 4  # the hash alone would match
    others = [_image(tmp_path / f"o{i}.jpg", rng) for i in range(20)]
    train = pd.DataFrame({"sample_id": np.arange(21), "price": np.arange(21) + 1.0, "image_link": "",
                          "catalog_content": [_catalog(f"product {w}", "x") for w in _words(rng, 21)]})
    test = pd.DataFrame({"sample_id": [100, 101], "image_link": "",
                         "catalog_content": [_catalog("other thing", "y"), _catalog("third thing", "z")]})
    paths = {"train": [source, *others], "test": [str(tmp_path / "lighter.jpg"),
                                                  _resaved(source, tmp_path / "resaved.jpg")]}
    report = duplicate_report(train, test, "amazon2025", paths)
    assert report["kind"].tolist() == ["none", "image_hash"]  # the re-saved copy still matches


def test_the_summary_says_whether_images_were_compared_at_all(planted, tmp_path):
    _, with_images = leaks.leak_report(planted, "amazon2025", tmp_path / "a", planted["image_paths"])
    assert with_images["image_hashes"] is True
    assert with_images["image_hashed_rows"] == {"train": N_TRAIN, "test": len(planted["test"])}
    assert with_images["by_kind"]["image_hash"] == dict(PLANTED)["image_hash"]
    # a text-only run: 01 cached no picture, so no row has a hash and nothing was compared
    nothing = {"train": [None] * N_TRAIN, "test": [None] * len(planted["test"])}
    _, text_only = leaks.leak_report(planted, "amazon2025", tmp_path / "b", nothing)
    assert text_only["image_hashes"] is False and text_only["image_hashed_rows"] == {"train": 0, "test": 0}
    _, skipped = leaks.leak_report(planted, "amazon2025", tmp_path / "c", None)
    assert skipped["image_hashes"] is False and skipped["image_hashed_rows"] is None
    assert json.loads((tmp_path / "b" / "leak_report.json").read_text())["image_hashes"] is False


def test_a_placeholder_link_on_three_train_products_and_a_test_one_is_no_twin():
    # a real amz25_dev case: one picture link on cereal, mustard, juice (train) and crackers (test)
    from amzkit.stages.leaks import duplicate_report

    link, own = "https://m.media-amazon.com/images/I/51m1gdQJW2L.jpg", "https://x/own.jpg"
    train = pd.DataFrame({"sample_id": [1, 2, 3, 4], "price": [33.24, 6.485, 10.79, 5.0],
                          "image_link": [link, link, link, own],
                          "catalog_content": ["Item Name: Maple cereal\n", "Item Name: Hot mustard\n",
                                              "Item Name: Blueberry juice\n", "Item Name: Garden hose\n"]})
    test = pd.DataFrame({"sample_id": [9, 10], "image_link": [link, own],
                         "catalog_content": ["Item Name: Honey crackers\n", "Item Name: Hose for the garden\n"]})
    report = duplicate_report(train, test, "amazon2025").set_index("test_id")
    assert report.loc[9, "kind"] == "none"  # 4 products share the link: generic, as the 4th one shows
    assert report.loc[10, "kind"] == "image_url" and report.loc[10, "twin_price"] == 5.0


def test_rows_without_product_text_are_no_text_twins_of_each_other(planted):
    """A listing with no name, bullets or description (only the template's Value/Unit lines) says nothing of
    the product: two of them are not twins, however alike their template lines read to TF-IDF."""
    bare = "Item Name: \nValue: 1.0\nUnit: Count"
    train = pd.concat([planted["train"], pd.DataFrame({"sample_id": [900], "price": [99.0], "image_link": [""],
                                                       "catalog_content": [bare]})], ignore_index=True)
    test = pd.concat([planted["test"], pd.DataFrame({"sample_id": [20_000, 20_001], "image_link": ["", ""],
                                                     "catalog_content": [bare, "Item Name: ...\n" + bare[12:]]})],
                     ignore_index=True)
    report = duplicate_report(train, test, "amazon2025").set_index("test_id")
    assert report.loc[[20_000, 20_001], "kind"].tolist() == ["none", "none"]
    assert (report.loc[[20_000, 20_001], "text_similarity"] < TWIN_THRESHOLD).all()
    # the planted text twins are still found
    assert (report["kind"] == "text").sum() == dict(PLANTED)["text"]


def test_names_of_numbers_alone_are_no_exact_name_twins(planted):
    """Real amz25_dev rows are named '1' and '25': a bare number (or a name whose words the normalisation drops,
    such as one in another script) names no product, so it makes no twin; a name with words still does."""
    extra_train = pd.DataFrame({"sample_id": [900, 901, 902], "price": [99.0, 7.0, 3.0], "image_link": "",
                                "catalog_content": [_catalog("25", "red enamel teapot"), _catalog("茶 500", "tea"),
                                                    _catalog("Blue Kettle 2", "steel kettle")]})
    extra_test = pd.DataFrame({"sample_id": [20_000, 20_001, 20_002], "image_link": "",
                               "catalog_content": [_catalog("25", "usb charging cable"), _catalog("咖啡 500", "coffee"),
                                                   _catalog("blue kettle, 2!", "another description")]})
    train = pd.concat([planted["train"], extra_train], ignore_index=True)
    test = pd.concat([planted["test"], extra_test], ignore_index=True)
    report = duplicate_report(train, test, "amazon2025").set_index("test_id")
    assert report.loc[[20_000, 20_001, 20_002], "kind"].tolist() == ["none", "none", "exact_name"]
    assert report.loc[20_002, "twin_price"] == 3.0


def test_the_twin_price_group_makes_no_twin_of_rows_without_product_words(tmp_path):
    """03's twin_price read a template-only row (Value/Unit lines alone) as the cosine-1.0 twin of another, as
    02's leak report did, and gave it that row's price."""
    from amzkit.core.schema import get_schema
    from amzkit.ml.base import RunInputs
    from amzkit.ml.featureset import FOLD_FEATURE_GROUPS

    bare = "Item Name: \nValue: 1.0\nUnit: Count"
    named = [_catalog(f"product {word}", f"a {word} for the kitchen") for word in ("kettle", "teapot", "mug")]
    train = pd.DataFrame({"sample_id": [1, 2, 3, 4], "price": [9.0, 19.0, 29.0, 99.0], "image_link": "",
                          "catalog_content": [*named, bare]})
    test = pd.DataFrame({"sample_id": [5, 6], "image_link": "", "catalog_content": [bare, named[1]]})
    inputs = RunInputs({"train": train, "test": test}, get_schema("amazon2025"), tmp_path)
    transform = FOLD_FEATURE_GROUPS["twin_price"](inputs, 0).fit(np.arange(4), train["price"].to_numpy())
    out = transform.transform(np.array([4, 5]))
    assert np.isnan(out[0, 0]) and out[0, 1] < TWIN_THRESHOLD, "the bare test row has no twin"
    assert out[1, 0] == pytest.approx(np.log1p(19.0)), "a named row still finds its twin"


def test_a_text_threshold_of_1_finds_every_identical_text():
    """float32 cosines of identical TF-IDF rows land at 0.99999x as often as at 1: at leak_text_threshold 1
    (allowed: only identical texts) about half the identical copies were no text twins. Names of digits alone,
    so no exact_name match stands in for the text."""
    rng = np.random.default_rng(0)
    vocabulary = _words(rng, 2000)
    texts = [_catalog(str(i), " ".join(rng.choice(vocabulary, 60))) for i in range(60)]
    train = pd.DataFrame({"sample_id": np.arange(60), "price": np.arange(60) + 1.0, "catalog_content": texts,
                          "image_link": ""})
    test = pd.DataFrame({"sample_id": 100 + np.arange(40), "catalog_content": texts[:40], "image_link": ""})
    report = duplicate_report(train, test, "amazon2025", text_threshold=1.0)
    assert (report["kind"] == "text").all(), report["text_similarity"].tolist()
    assert report["train_id"].tolist() == list(range(40)) and (report["similarity"] <= 1.0).all()
    assert (report["text_similarity"] <= 1.0).all()
