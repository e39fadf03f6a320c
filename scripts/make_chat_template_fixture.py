#!/usr/bin/env python3
"""Makes Tests/Fixtures/chat-templates/expected.json: what transformers' apply_chat_template
(tokenize=False) renders for each chat template here and each conversation below, so the
Swift Jinja renderer can be compared byte for byte without Python in CI.

Needs `pip install transformers jinja2` (no torch: render_jinja_template is what
apply_chat_template calls, with transformers' own Jinja environment: trim_blocks,
lstrip_blocks, its tojson, raise_exception).

  python3 scripts/make_chat_template_fixture.py

Templates (Tests/Fixtures/chat-templates/*.jinja): smollm2 (SmolLM2-Instruct, from its GGUF),
llama2 (Llama-2-chat), llama3 (Meta-Llama-3-Instruct), mistral (Mistral-Instruct,
whitespace-controlled), blocks (written here: indented tags without whitespace control, and
the rest of the supported subset); and as llama.cpp keeps copies of the hub's
(models/templates): qwen2.5 (Qwen2.5-7B-Instruct), llama3.1 (Llama-3.1-8B-Instruct: namespace,
tools, date_string), mistral-nemo (Mistral-Nemo-Instruct-2407: selectattr, loop filters),
phi3.5 (Phi-3.5-mini-instruct), gemma2 (gemma-2-2b-it: refuses system turns),
deepseek-r1-distill-llama (DeepSeek-R1-Distill-Llama-8B: split, namespace). A case the
template refuses (raise_exception) records the message instead of the text.
"""
import json
import pathlib

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = pathlib.Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "chat-templates"

# The special tokens HF passes to the template, as each model's tokenizer has them (None: the
# tokenizer has none, and HF leaves the name undefined).
TOKENS = {
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5": (None, "<|im_end|>"),
    "mistral": ("<s>", "</s>"),
    "blocks": ("<s>", "</s>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-nemo": ("<s>", "</s>"),
    "phi3.5": ("<s>", "<|endoftext|>"),
    "gemma2": ("<bos>", "<eos>"),
    "deepseek-r1-distill-llama": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "user": [m("user", "Hi!")],
    "system-user": [m("system", "You are terse."), m("user", "What is 2+2?")],
    "exchange": [m("user", "Name a colour."), m("assistant", "Blue.")],
    "system-multi-turn": [
        m("system", "You answer in French."),
        m("user", "Hello"),
        m("assistant", "Bonjour !"),
        m("user", "Thanks"),
        m("assistant", "De rien."),
    ],
    "multi-turn": [m("user", "1"), m("assistant", "2"), m("user", "3"), m("assistant", "4"), m("user", "5")],
    "whitespace-unicode": [
        m("user", "  padded\tline \n\nnext: \"quoted\" \\ back — ünïcødé 日本 🙂  "),
        m("assistant", "\n indented answer\n"),
    ],
    "roles-repeat": [m("user", "a"), m("user", "b")],
    "named-system-last": [{"role": "user", "content": "Hey", "name": "Ann"}, m("assistant", "Hello Ann."),
                          m("system", "Say \"ünïcødé\"\n\tnow")],
}


def main():
    cases = []
    for path in sorted(HERE.glob("*.jinja")):
        name = path.stem
        template = path.read_text(encoding="utf-8")
        bos, eos = TOKENS[name]
        for conversation_name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                case = {"template": name, "conversation": conversation_name,
                        "add_generation_prompt": add_generation_prompt}
                try:
                    rendered, _ = render_jinja_template(
                        conversations=[messages], tools=None, chat_template=template,
                        add_generation_prompt=add_generation_prompt,
                        **{k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v is not None})
                    case["expected"] = rendered[0]
                except jinja2.exceptions.TemplateError as error:
                    case["error"] = str(error)
                cases.append(case)
    fixture = {
        "made_by": f"scripts/make_chat_template_fixture.py (transformers {transformers.__version__}, jinja2 {jinja2.__version__})",
        "tokens": {name: {"bos_token": bos, "eos_token": eos} for name, (bos, eos) in TOKENS.items()},
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    out = HERE / "expected.json"
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{out}: {len(cases)} cases, {sum('error' in c for c in cases)} refused by their template")


if __name__ == "__main__":
    main()
