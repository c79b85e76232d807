"""Processor -> model -> generate with a tiny random SubobjectLlava built locally (offline, a few seconds).

    python examples/generate.py [IMAGE]

With a real checkpoint (e.g. one written by ``subobject-vlm convert llava-hf/llava-1.5-7b-hf DST``) replace the
tiny model and processor by ``AutoModelForImageTextToText.from_pretrained(DST)`` and
``AutoProcessor.from_pretrained(DST)``; the rest is unchanged. A random model answers with random words.
"""

import sys
from pathlib import Path

import torch

from subobject_vlm import SubobjectImageProcessor
from subobject_vlm.processing_subobject_llava import SubobjectLlavaProcessor
from subobject_vlm.tiny import build_tiny_model, tiny_tokenizer

image = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent / "images" / "coffee.jpg")

tokenizer = tiny_tokenizer()  # word-level, with <image> as a special token
image_processor = SubobjectImageProcessor(
    boundary_model="gradient",
    max_tokens=16,
    size={"height": 32, "width": 32},
    label_size={"height": 64, "width": 64},
)
processor = SubobjectLlavaProcessor(image_processor=image_processor, tokenizer=tokenizer)
torch.manual_seed(0)
model = build_tiny_model(tokenizer, image_size=32, max_tokens_per_image=16).eval()

messages = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}
]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=image, text=prompt, return_tensors="pt")
print(f"prompt: {prompt!r}")
print(f"{int(inputs['num_tokens'][0])} region tokens -> {inputs['input_ids'].shape[1]} input tokens")
output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
print("answer:", processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
