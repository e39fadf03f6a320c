"""The official openai client against `sortedtrain serve`: chat completions streamed and
not, at one depth, must give the answer `generate` gives; the client's own error type for a
bad request. Usage: openai_client.py BASE_URL MODEL EXPECTED_ANSWER (run by serve.sh)."""
import sys

import openai

base, model, expected = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
messages = [{"role": "user", "content": "Sort the letters of qwertyuiop alphabetically."}]

whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=20)
assert whole.choices[0].message.content == expected, (whole.choices[0].message.content, expected)
assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0, whole.usage

pieces = []
for chunk in client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=20, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
assert "".join(pieces) == expected, ("".join(pieces), expected)

assert [m.id for m in client.models.list()][0].startswith(model.split("@")[0])
try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as error:
    assert error.status_code == 404
print(f"chat completions whole and streamed equal generate's answer ({len(pieces)} chunks); unknown model → NotFoundError")
