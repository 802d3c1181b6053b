"""Export a generation study's candidate: its files, the tokenizer, and a load.py whose
`generate()` produces the very tokens the study measured. The candidate is built once here to
write down its greedy continuations of the study's held-out prompts; load.py checks itself
against them when run as a script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hasten import folders
from hasten.errors import HastenError
from hasten.generate import backends
from hasten.generate.decoder import Decoder, tokenizer
from hasten.generate.trial import build
from hasten.generate.workload import Tokens

LOAD_PY = '''"""{name}, exported by hasten from {study}.

Run it to check that it still produces the tokens the study measured; import it to use
generate(). Needs: {requires}.
"""

import json
from pathlib import Path

here = Path(__file__).resolve().parent
threads = {threads}

{code}


from transformers import AutoTokenizer  # noqa: E402

tokenizer = AutoTokenizer.from_pretrained(here / "tokenizer")


def generate(text: str, new_tokens: int = {new_tokens}) -> str:
    """Greedy continuation of `text`, as the study measured it."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(generate_ids([ids], new_tokens)[0])


if __name__ == "__main__":
    recorded = json.loads((here / "candidate.json").read_text())["continuations"]
    tokens = generate_ids(recorded["prompts"], recorded["new_tokens"])
    same = tokens == recorded["tokens"]
    print("same tokens as the study:", "yes" if same else "NO")
    print(generate("The function returns"))
    raise SystemExit(0 if same else 1)
'''


def export_candidate(study, name: str, out: Path) -> Path:
    """Write candidate `name` of a generation study to `out` (a new folder, or one hasten
    exported to before)."""
    row = next((c for c in study.candidates if c["name"] == name), None)
    if row is None or study.results.get(name, {}).get("status") != "ok":
        finished = sorted(n for n, r in study.results.items() if r["status"] == "ok")
        raise HastenError(f"{name} is not a finished candidate of {study.folder}; choose one of "
                          f"{', '.join(finished) or 'none yet'}.")
    candidate = backends.find(name)
    if candidate is None or candidate.export is None:
        raise HastenError(f"{name} cannot be exported yet; export another candidate.")
    settings = study.settings
    threads = backends.threads_of(row["settings"], settings.threads)
    tokens = Tokens(study.folder, settings.workload.data.get("tokens_sha256"))
    generator = build(study.folder, settings, row, tokens)
    prompts = tokens.continuations()
    continuations = generator.generate(prompts, settings.workload.new_tokens)
    exported = candidate.export(backends.BuildContext(
        Decoder.from_dict(settings.model), study.folder / "artifacts" / "generate",
        row["settings"], threads), generator)
    folders.claim(out, "export", "`out` folder")
    folders.clear(out)
    names = ["candidate.json", "load.py", "tokenizer", *exported.files]
    folders.note_files(out, names)
    tokenizer(settings.model["folder"]).save_pretrained(out / "tokenizer")
    for target, source in exported.files.items():
        _copy(Path(source), out / target)
    recipe = {"candidate": name, "study": str(study.folder), "settings": row["settings"],
              "threads": threads,
              "random_weights": not settings.model["has_weights"],
              "continuations": {"prompts": prompts.tolist(),
                                "new_tokens": settings.workload.new_tokens,
                                "tokens": continuations.tolist()},
              "confirmed": {p: c[name] for p in study.confirmation.get("results", {})
                            if name in (c := study.confirmed(p))}}
    folders.write_whole(out / "candidate.json", json.dumps(recipe, indent=2))
    folders.write_whole(out / "load.py", LOAD_PY.format(
        name=name, study=study.folder.name, threads=threads,
        code="\n".join(exported.code), new_tokens=settings.workload.new_tokens,
        requires=", ".join(exported.requires)))
    return out


def _copy(source: Path, target: Path) -> None:
    """Copy a file or a folder under a temporary name beside its target, then rename it."""
    partial = target.with_name(f".{target.name}.partial")
    if source.is_dir():
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
    else:
        shutil.copy2(source, partial)
    partial.replace(target)
