"""Train a tiny random SubobjectLlava with LoRA on synthetic coloured shapes ("a red square"), on CPU.

    python examples/train_tiny.py [OUTPUT_DIR]

The same as ``subobject-vlm train --config configs/vlm_tiny_smoke.yaml``: synthetic images are written,
segmented once (cached under OUTPUT_DIR/preprocessed), 30 LoRA steps run, the adapters are merged into
OUTPUT_DIR/merged, and the merged model answers a question about one of the training images.
"""

import json
import sys
from pathlib import Path

import yaml
from transformers import AutoModelForImageTextToText, AutoProcessor

from subobject_vlm.training.train_vlm import train_vlm

repo = Path(__file__).resolve().parents[1]
config = yaml.safe_load((repo / "configs" / "vlm_tiny_smoke.yaml").read_text())
config["output_dir"] = sys.argv[1] if len(sys.argv) > 1 else "runs/vlm_train_tiny"
config["training"]["disable_tqdm"] = True
output_dir = train_vlm(config)

losses = [e["loss"] for e in json.loads((output_dir / "log_history.json").read_text()) if "loss" in e]
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")

processor = AutoProcessor.from_pretrained(output_dir / "merged")
model = AutoModelForImageTextToText.from_pretrained(output_dir / "merged").eval()
data = next((output_dir / "synthetic").glob("train-*")) / "data.json"
record = json.loads(data.read_text())[0]
messages = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}
]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=str(data.parent / record["image"]), text=prompt, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
print(f"truth: {record['conversations'][1]['value']!r}  model: {answer!r}")
