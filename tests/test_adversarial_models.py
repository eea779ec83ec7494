"""Model folders and checkpoints are data, not instructions: tiny random models built
with the real libraries, then tampered with (tensors renamed, dimensions inflated, files
pointing outside, backbones to fetch, compressed or legacy pickles)."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from foundation_fixtures import (
    TINY_CLIP,
    save_tiny_models,
)
from peak_memory import measure
from safetensors.torch import load_file, save_file

from wsssbed.errors import InputError
from wsssbed.models.clip import load_clip
from wsssbed.models.grounding_dino import load_detector
from wsssbed.models.sam import load_sam


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection is recorded and fails."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _copy(source: Path, target: Path, config=None, processor=None) -> Path:
    shutil.copytree(source, target)
    for name, change in (("config.json", config), ("processor_config.json", processor)):
        if change:
            data = json.loads((target / name).read_text())
            change(data)
            (target / name).write_text(json.dumps(data))
    return target


def _refused(folder: Path, *phrases: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_detector(folder)
    for phrase in phrases:
        assert phrase in str(info.value), str(info.value)
    return info.value


# --- Grounding DINO -----------------------------------------------------------------------


def test_weights_holding_none_of_the_models_tensors_are_refused(tiny, tmp_path, no_network):
    """Same shapes under other names: without the loading report this loads as a randomly
    initialised detector and writes confident boxes."""
    renamed = _copy(tiny["detector"], tmp_path / "renamed")
    state = load_file(renamed / "model.safetensors")
    save_file({f"other.{k}": v for k, v in state.items()}, renamed / "model.safetensors")
    _refused(renamed, "missing keys", "unexpected keys")
    extra = _copy(tiny["detector"], tmp_path / "extra")
    save_file({**state, "spare": torch.zeros(3, 5)}, extra / "model.safetensors")
    _refused(extra, "the weights hold", "in 271")
    reshaped = _copy(tiny["detector"], tmp_path / "reshaped")
    key = "model.query_position_embeddings.weight"
    save_file({**state, key: torch.zeros(11, 32)}, reshaped / "model.safetensors")
    _refused(reshaped, "a tensor shape the weights lack, first: (10, 32)")
    assert load_detector(tiny["detector"]).max_tokens == 32  # the untouched folder loads
    assert no_network == []


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("use_timm_backbone", True, "use_timm_backbone"),
        ("use_pretrained_backbone", True, "use_pretrained_backbone"),
        ("backbone", "swin_tiny_patch4_window7_224", "`backbone`"),
        ("auto_map", {"AutoModel": "evil.Model"}, "remote code"),
        ("max_text_len", 10**7, "exceeds what its text encoder reads"),
        ("max_text_len", 65, "max_position_embeddings 64"),
        ("encoder_attention_heads", 4096, "4096 attention heads"),
        ("encoder_ffn_dim", 10**7, "the weights hold"),
        ("d_model", "wide", "does not describe a Grounding DINO"),
    ],
)
def test_a_crafted_config_is_refused_before_anything_is_built(
    tiny, tmp_path, no_network, key, value, phrase
):
    folder = _copy(tiny["detector"], tmp_path / "crafted", config=lambda c: c.update({key: value}))
    _refused(folder, phrase)
    assert no_network == []


@pytest.mark.parametrize(
    "size",
    [
        {"shortest_edge": 20000, "longest_edge": 20000},
        {"shortest_edge": 800},  # the longest side unbounded
        {"height": 64, "width": 5000},
    ],
)
def test_a_processor_that_resizes_beyond_the_authors_sizes_is_refused(tiny, tmp_path, size):
    folder = _copy(tiny["detector"], tmp_path / "big",
                   processor=lambda p: p["image_processor"].update(size=size))  # fmt: skip
    _refused(folder, "at most 1333 pixels a side")
    off = _copy(tiny["detector"], tmp_path / "off",
                processor=lambda p: p["image_processor"].update(do_resize=False))  # fmt: skip
    _refused(off, "do_resize False")


def test_every_file_read_is_inside_the_folder_given(tiny, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(tiny["detector"] / "model.safetensors", outside / "model-00001.safetensors")
    for shard in ("../outside/model-00001.safetensors", str(outside / "model-00001.safetensors")):
        folder = _copy(tiny["detector"], tmp_path / f"index-{len(shard)}")
        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        index = {"metadata": {}, "weight_map": dict.fromkeys(state, shard)}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        _refused(folder, "not a file of this folder")
    linked = _copy(tiny["detector"], tmp_path / "linked")
    (outside / "tokenizer.json").write_bytes((linked / "tokenizer.json").read_bytes())
    (linked / "tokenizer.json").unlink()
    (linked / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    _refused(linked, "links outside the folder", "cp -rL")


AUDIT = """
from pathlib import Path
import numpy as np
from wsssbed.models.grounding_dino import load_detector
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        opened.append(args[0])
    elif event == "socket.connect":
        opened.append("connect")
sys.addaudithook(hook)
detector = load_detector(Path(sys.argv[1]))
detector.detect(np.zeros((40, 50, 3), np.uint8), ["cat", "dog"], 0.35, 0.25)
report(opened=opened)
"""


def test_a_legitimate_load_reads_only_the_folder_and_never_connects(tiny):
    """Every model file Python opens (configs, tokenizer) lies in the folder; no socket is
    ever connected (audit hooks of a fresh process)."""
    opened = measure(AUDIT, tiny["detector"])["opened"]
    assert "connect" not in opened
    packages = ("site-packages", ".egg-info", ".dist-info")  # installed packages' metadata
    model_files = [p for p in opened if p.endswith((".json", ".txt", ".safetensors", ".model"))
                   and not any(part in p for part in packages)]  # fmt: skip
    assert model_files and all(Path(p).parent == tiny["detector"] for p in model_files), opened


MEASURE_DETECTOR = """
from pathlib import Path
import numpy as np
import transformers
from wsssbed.errors import InputError
from wsssbed.models.grounding_dino import load_detector
folder = Path(sys.argv[1])
imported = peak()
detector = load_detector(folder / "legit")
detector.detect(np.zeros((300, 400, 3), np.uint8), ["cat", "dog"], 0.35, 0.25)
baseline = peak()
outcome = {}
for name in ("text", "resize", "ffn"):
    try:
        load_detector(folder / name)
        outcome[name] = "loaded"
    except InputError as error:
        outcome[name] = error.problem
report(imported=imported, baseline=baseline, peak=peak(), outcome=outcome)
"""


def test_inflated_dimensions_cost_no_more_than_the_legitimate_detector(tiny, tmp_path):
    """The review's max_text_len = 10**7 (6.83 GB), processor size 20000 (5.5 GB), and a
    feed-forward width the weights do not have (1.3 GB per layer if built)."""
    _copy(tiny["detector"], tmp_path / "legit")
    _copy(tiny["detector"], tmp_path / "text", config=lambda c: c.update(max_text_len=10**7))
    _copy(tiny["detector"], tmp_path / "resize", processor=lambda p: p["image_processor"].update(
        size={"shortest_edge": 20000, "longest_edge": 20000}))  # fmt: skip
    _copy(tiny["detector"], tmp_path / "ffn", config=lambda c: c.update(encoder_ffn_dim=10**7))
    result = measure(MEASURE_DETECTOR, tmp_path)
    print(result)
    assert not any(o == "loaded" for o in result["outcome"].values()), result
    legit = result["baseline"] - result["imported"]
    assert result["peak"] - result["baseline"] < max(legit, 32 << 20), result


# --- SAM ----------------------------------------------------------------------------------


def _sam_state(tiny) -> dict[str, torch.Tensor]:
    return torch.load(tiny["sam"], weights_only=True)


def test_a_sam_checkpoint_claiming_a_costly_encoder_is_refused(tiny, tmp_path):
    state = _sam_state(tiny)
    grid = {**state, "image_encoder.pos_embed": torch.zeros(1, 128, 128, 32)}
    torch.save(grid, tmp_path / "grid.pth")
    with pytest.raises(InputError, match="2048-pixel input in a 128x128 patch grid"):
        load_sam(tmp_path / "grid.pth")
    heads = {**state, "image_encoder.patch_embed.proj.weight": torch.zeros(64, 3, 16, 16)}
    for i in range(2):
        heads[f"image_encoder.blocks.{i}.attn.rel_pos_h"] = torch.zeros(7, 1)
    torch.save(heads, tmp_path / "heads.pth")
    with pytest.raises(InputError, match="with 64 heads"):
        load_sam(tmp_path / "heads.pth")
    rank = {**state, "image_encoder.pos_embed": torch.zeros(16)}
    torch.save(rank, tmp_path / "rank.pth")
    with pytest.raises(InputError, match="not a Segment Anything checkpoint"):
        load_sam(tmp_path / "rank.pth")


MEASURE_SAM = """
from pathlib import Path
from wsssbed.errors import InputError
from wsssbed.models.sam import load_sam
folder = Path(sys.argv[1])
load_sam(folder / "legit.pth")
baseline = peak()
try:
    load_sam(folder / "deep.pth")
    outcome = "loaded"
except InputError as error:
    outcome = error.problem
report(baseline=baseline, peak=peak(), outcome=outcome)
"""


def test_blocks_the_checkpoint_does_not_hold_are_never_built(tiny, tmp_path):
    """A 3 MB checkpoint whose keys claim 100 blocks of width 2048: built for real that is
    100 x 12 x 2048^2 floats (20 GB); it is refused from the shapes on the meta device."""
    shutil.copy(tiny["sam"], tmp_path / "legit.pth")
    state = _sam_state(tiny)
    deep = {**state, "image_encoder.patch_embed.proj.weight": torch.zeros(2048, 3, 16, 16),
            "image_encoder.pos_embed": torch.zeros(1, 16, 16, 2048)}  # fmt: skip
    for i in range(100):
        deep[f"image_encoder.blocks.{i}.attn.rel_pos_h"] = torch.zeros(31, 128)
    torch.save(deep, tmp_path / "deep.pth")
    size = (tmp_path / "deep.pth").stat().st_size
    result = measure(MEASURE_SAM, tmp_path)
    print(result, size)
    assert "does not fit SAM" in result["outcome"] and "missing" in result["outcome"]
    assert result["peak"] - result["baseline"] < 4 * size, result


def test_compressed_and_legacy_pytorch_files_are_refused_before_torch_reads_them(tiny, tmp_path):
    """torch.load inflates a deflated member in full before checking it (a 400 KB file
    took 890 MB); the legacy format allocates the storage sizes its header declares."""
    with zipfile.ZipFile(tiny["sam"]) as source, zipfile.ZipFile(tmp_path / "z.pth", "w") as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(InputError, match=r"is compressed, which torch\.save never does"):
        load_sam(tmp_path / "z.pth")
    with open(tmp_path / "legacy.pth", "wb") as stream:
        pickle.dump({"a": 1}, stream)
    with pytest.raises(InputError, match="not PyTorch's zip format"):
        load_sam(tmp_path / "legacy.pth")
    assert load_sam(tiny["sam"]) is not None


# --- CLIP ---------------------------------------------------------------------------------


def _clip_config(tmp_path: Path, name: str, change) -> Path:
    config = json.loads(json.dumps(TINY_CLIP))
    change(config)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda c: c["vision_cfg"].update(timm_model_name="vit_base_patch16_224",
                                          timm_model_pretrained=True), "timm_model_name"),
        (lambda c: c["text_cfg"].update(hf_model_name="bert-base-uncased"), "hf_model_name"),
        (lambda c: c["text_cfg"].update(hf_tokenizer_name="bert-base-uncased"),
         "hf_tokenizer_name"),
        (lambda c: c["text_cfg"].update(context_length=10**6), "context_length is 1000000"),
        (lambda c: c["vision_cfg"].update(width=64, head_width=1), "vision heads"),
        (lambda c: c["vision_cfg"].update(image_size=4096), "image_size is 4096"),
        (lambda c: c["vision_cfg"].update(width="wide"), "width must be a positive integer"),
        (lambda c: c["vision_cfg"].update(width=2048, head_width=128), "does not fit CLIP"),
    ],
)  # fmt: skip
def test_a_crafted_clip_config_is_refused(tiny, tmp_path, no_network, change, phrase):
    config = _clip_config(tmp_path, "crafted-vit", change)
    with pytest.raises(InputError, match=phrase):
        load_clip(None, tiny["clip"], config)
    assert no_network == []


def test_a_config_named_like_a_hub_address_is_not_fetched(tiny, tmp_path, no_network):
    config = _clip_config(tmp_path, "hf-hub:someone", lambda c: None)
    with pytest.raises(InputError, match="is not an open_clip architecture"):
        load_clip(None, tiny["clip"], config)
    assert no_network == []
    model = load_clip(None, tiny["clip"], tiny["clip_config"])
    assert model.image_size == (64, 64)


def test_clip_weights_get_the_same_checks_as_sam(tiny, tmp_path):
    state = torch.load(tiny["clip"], weights_only=True)
    state.pop("visual.proj")
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(InputError, match="1 missing"):
        load_clip(None, tmp_path / "short.pt", tiny["clip_config"])
    assert np.isfinite(
        load_clip(None, tiny["clip"], tiny["clip_config"]).classify(
            [np.zeros((20, 20, 3), np.uint8)], ("cat", "dog")
        )
    ).all()


@pytest.mark.parametrize(
    "change",
    [{"image_std": [0, 0, 0]}, {"image_mean": [float("nan")] * 3}, {"rescale_factor": 0}],
)
def test_pixel_constants_that_make_every_input_nan_are_refused(tiny, tmp_path, change):
    """`image_std = [0, 0, 0]` made `boxes` write "0 boxes" with exit 0 (NaN inputs)."""
    folder = _copy(tiny["detector"], tmp_path / "nan",
                   processor=lambda p: p["image_processor"].update(change))  # fmt: skip
    _refused(folder, f"the image processor's {next(iter(change))} is")


def test_a_tokenizer_that_cannot_tokenize_a_prompt_is_refused_at_load(tiny, tmp_path):
    """A vocabulary without `[UNK]` ended in "unexpected Exception: WordPiece error" at
    the first prompt."""
    folder = _copy(tiny["detector"], tmp_path / "vocab")
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text())
    data["model"]["vocab"] = {f"w{i}": i for i in range(1000)}
    path.write_text(json.dumps(data))
    _refused(folder, "the tokenizer cannot tokenize a prompt")
