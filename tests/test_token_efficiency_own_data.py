"""compare-tokenizers on a user's own LLaVA JSON: attribute words as the tokenizer sees them, first mentions
scored, strict JSON, paths relative to the config, best val loss and an over-training warning."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_token_efficiency import toy_config

from subobject_vlm.cli import main
from subobject_vlm.evaluation.token_efficiency import (
    attribute_token_ids,
    load_config,
    results_table,
    word_token_ids,
)
from subobject_vlm.tiny import tiny_tokenizer

CAPTIONS = ["the red box is at the top left .", "the blue box is at the bottom right ."]


def write_user_data(folder, count: int = 6) -> None:
    """``count`` images of a red or blue box, ``train.json`` (all but 2) and ``val.jsonl`` (2) naming them."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    records = []
    for i in range(count):
        image = np.full((32, 32, 3), 30, np.uint8)
        image[4:16, 4 + i : 16 + i] = (200, 30, 30) if i % 2 == 0 else (30, 30, 200)
        image = np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{i}.png")
        records.append(
            {
                "image": f"{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nDescribe the image."},
                    {"from": "gpt", "value": CAPTIONS[i % 2]},
                ],
            }
        )
    (folder / "train.json").write_text(json.dumps(records[:-2]))
    (folder / "val.jsonl").write_text("\n".join(json.dumps(r) for r in records[-2:]))


def user_config(out_dir, **data) -> dict:
    config = toy_config(out_dir, tokenizers={"patch": {"boundary_model": "patch"}})
    config["data"] = {
        "train": {"path": "train.json", "image_folder": "images"},
        "val": {"path": "val.jsonl", "image_folder": "images"},
        "attribute_words": ["top", "left", "bottom", "right"],
        **data,
    }
    config["training"]["steps"] = 12  # 12 x 4 samples on 4 training captions: 12 epochs
    return config


def run_command(config_path, cwd) -> tuple[int, str]:
    """``subobject-vlm compare-tokenizers --config config_path`` run from ``cwd``: exit status and stderr."""
    stderr, here = io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(stderr):
            status = main(["compare-tokenizers", "--config", str(config_path)])
    finally:
        os.chdir(here)
    return status, stderr.getvalue()


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """One run on user data whose config holds paths relative to its own folder, run from another folder."""
    folder = tmp_path_factory.mktemp("own")
    write_user_data(folder / "project")
    config_path = folder / "project" / "compare.yaml"
    config_path.write_text(yaml.safe_dump(user_config("out")))
    (folder / "elsewhere").mkdir()
    status, stderr = run_command(config_path, folder / "elsewhere")
    return folder / "elsewhere" / "out", status, stderr


def bpe_tokenizer(sentences: list[str]):
    """A byte-level BPE tokenizer (``Ġ`` before a word mid-sentence, as GPT-2 / SmolLM2 have), trained here."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(
        sentences * 5, vocab_size=400, min_frequency=1, special_tokens=["<pad>", "<s>", "</s>", "<unk>"]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def test_attribute_words_match_byte_level_bpe_tokens_mid_sentence_and_at_the_start():
    tokenizer = bpe_tokenizer(["red box on the left", "the box is red .", "blue balls and red cubes"])
    start, middle = tokenizer("red")["input_ids"], tokenizer("the box is red")["input_ids"][-1:]
    assert start != middle and tokenizer.convert_ids_to_tokens(middle) == ["Ġred"]
    assert word_token_ids(tokenizer, ["red"]) == {"red": sorted(start + middle)}
    config = load_config(toy_config("out", data={"synthetic": {}, "attribute_words": ["red"]}))
    attribute_ids, _ = attribute_token_ids(config, tokenizer)
    assert sorted(attribute_ids.tolist()) == sorted(start + middle)


def test_attribute_words_match_word_level_tokens():
    tokenizer = tiny_tokenizer(["the", "red", "box"])
    config = load_config(toy_config("out", data={"synthetic": {}, "attribute_words": ["red", "green"]}))
    attribute_ids, reference_ids = attribute_token_ids(config, tokenizer)
    assert attribute_ids.tolist() == tokenizer("red", add_special_tokens=False)["input_ids"]
    assert reference_ids.tolist() == tokenizer("the", add_special_tokens=False)["input_ids"]


def test_attribute_words_that_match_no_token_fail_in_one_line_naming_them(tmp_path):
    write_user_data(tmp_path)
    config_path = tmp_path / "compare.yaml"
    config_path.write_text(yaml.safe_dump(user_config("out", attribute_words=["crimson", "azure"])))
    status, stderr = run_command(config_path, tmp_path)
    error = stderr.strip().splitlines()[-1]
    assert status == 2 and error.startswith("subobject-vlm compare-tokenizers: error: data.attribute_words")
    assert "crimson" in error and "azure" in error
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_pretrained_byte_level_bpe_language_model_gets_an_attribute_accuracy(tmp_path):
    from transformers import LlamaForCausalLM

    from subobject_vlm.tiny import tiny_text_config

    write_user_data(tmp_path)
    tokenizer = bpe_tokenizer([*CAPTIONS, "USER: ASSISTANT: Describe the image."])
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_text_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id)).save_pretrained(
        tmp_path / "lm"
    )
    tokenizer.save_pretrained(tmp_path / "lm")
    config = user_config("out", attribute_words=["red", "blue"])
    config["model"] = {"vision": "pixels", "text": {"pretrained": str(tmp_path / "lm")}}
    config["training"]["steps"] = 2
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(config))
    status, stderr = run_command(tmp_path / "compare.yaml", tmp_path)
    assert status == 0, stderr
    [run] = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert 0.0 <= run["attribute_accuracy"] <= 1.0  # "Ġred" / "Ġblue" scored


def test_position_words_after_the_are_scored_when_first_named(tmp_path):
    write_user_data(tmp_path)
    config = user_config(str(tmp_path / "out"))
    config["training"]["steps"] = 2
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(config))
    status, stderr = run_command(tmp_path / "compare.yaml", tmp_path)
    assert status == 0, stderr
    [run] = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert 0.0 <= run["attribute_accuracy"] <= 1.0  # "at the top left": top and left count


def test_results_jsonl_is_strict_json_with_null_for_metrics_without_data(user_run):
    out_dir, _, _ = user_run

    def no_constants(name):
        raise AssertionError(f"results.jsonl holds a bare {name}")

    [run] = [json.loads(line, parse_constant=no_constants) for line in (out_dir / "results.jsonl").open()]
    assert run["accuracy"] is None  # captions only: no questions to score


def test_results_table_shows_n_a_for_metrics_without_data(user_run):
    out_dir, _, _ = user_run
    table = (out_dir / "results.md").read_text()
    assert "n/a" in table and "nan" not in table


def test_relative_data_paths_are_taken_from_the_config_files_folder(user_run):
    out_dir, status, stderr = user_run
    assert status == 0, stderr
    assert (out_dir / "results.jsonl").is_file()  # output_dir: relative to where the command runs


def test_a_missing_data_file_names_its_config_key_in_one_line(tmp_path):
    write_user_data(tmp_path)
    config = user_config("out")
    config["data"]["train"]["path"] = "nope.json"
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(config))
    status, stderr = run_command(tmp_path / "compare.yaml", tmp_path)
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1
    assert (
        lines[0].startswith("subobject-vlm compare-tokenizers: error: data.train.path")
        and "nope.json" in lines[0]
    )


def test_results_report_best_and_last_val_loss_and_the_step_of_the_best(user_run):
    out_dir, _, _ = user_run
    [run] = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    steps, losses = [p[0] for p in run["curve"]], [p[2] for p in run["curve"]]
    assert run["val_loss"] == pytest.approx(losses[-1], abs=1e-5)
    assert run["best_val_loss"] == min(losses) and run["best_step"] == steps[int(np.argmin(losses))]
    table = (out_dir / "results.md").read_text()
    assert (
        "best val loss (step)" in table and f"{min(losses):.4f} ± 0.0000 (step {run['best_step']})" in table
    )


def test_training_for_more_than_ten_epochs_warns_in_one_line(user_run):
    _, _, stderr = user_run
    [warning] = [line for line in stderr.splitlines() if "epochs" in line]
    assert warning.startswith("warning:") and "12.0 epochs" in warning


def test_old_results_without_the_new_fields_show_n_a():
    run = {
        "tokenizer": "a",
        "budget": 8,
        "seed": 0,
        "mean_tokens": 8.0,
        "val_loss": 1.0,
        "val_perplexity": 2.7,
        "accuracy": 0.5,
        "attribute_accuracy": 0.4,
        "step_seconds": 0.01,
        "wall_seconds": 1.0,
    }
    assert "| n/a |" in results_table([run])
