"""The base layer on its own: the one atomic writer in any folder, YAML and overrides as every
stage reads them, and the error classes the entry points report as one line."""

import os
import subprocess
import sys
import time

import pytest

from alignment_unidpo.base import files
from alignment_unidpo.base.cli import entry_point
from alignment_unidpo.base.errors import DataGenError, DataValidationError, InputError, RecipeError
from alignment_unidpo.base.yamlio import parse_overrides, read_yaml, split_overrides

KILLED_WRITER = """
import os, signal, sys
from alignment_unidpo.base.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    os.kill(os.getpid(), signal.SIGKILL)  # killed while its temporary file exists
"""


def test_a_write_is_whole_or_nothing_and_cleans_up_after_a_dead_writer(tmp_path):
    shard = tmp_path / "generate-abc" / "shard-00000.jsonl"
    files.write_jsonl_atomic(shard, [{"id": 0, "text": "é"}])
    assert shard.read_text() == '{"id": 0, "text": "\\u00e9"}\n'  # json.dumps as datagen always wrote it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(shard)], env=env)
    assert proc.wait() == -9
    (orphan,) = [p for p in shard.parent.iterdir() if p.name.endswith(".tmp")]
    assert f".{files.host_tag()}.{proc.pid}." in orphan.name and shard.read_text().startswith('{"id": 0')
    old_elsewhere = shard.parent / f".{shard.name}.otherhost.7.abc123.tmp"
    new_elsewhere = shard.parent / f".{shard.name}.otherhost.8.abc123.tmp"
    unrelated = shard.parent / ".notes.txt.tmp"
    for path in (old_elsewhere, new_elsewhere, unrelated):
        path.write_text("")
    hours_ago = time.time() - 2 * files.STALE_TEMP_SECONDS
    for path in (old_elsewhere, unrelated):
        os.utime(path, (hours_ago, hours_ago))
    files.write_text_atomic(shard.parent / "done.json", "{}")  # the next write into the folder
    assert sorted(p.name for p in shard.parent.iterdir()) == sorted(
        ["done.json", shard.name, new_elsewhere.name, unrelated.name])
    with pytest.raises(RuntimeError):
        with files.atomic_path(shard) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("disk full")
    assert shard.read_text().startswith('{"id": 0')
    assert sorted(p.name for p in shard.parent.glob(".*.tmp")) == sorted([new_elsewhere.name, unrelated.name])


def test_yaml_is_read_the_same_way_by_every_stage(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: no\nb: 1e-6\nc: true\n")
    assert read_yaml(path) == {"a": "no", "b": 1e-6, "c": True}  # YAML 1.2 scalars
    path.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(DataGenError, match=r"c.yaml, line 3: not valid YAML: key 'a' appears twice \(first on line 1\)"):
        read_yaml(path, DataGenError)
    assert split_overrides(["--beta=3", "--output_dir", "x", "--use-peft"]) == [
        ("beta", "3"), ("output_dir", "x"), ("use_peft", "true")]
    assert parse_overrides(["--beta=3", "--lora_target_modules=[q_proj]", "--name="]) == {
        "beta": 3, "lora_target_modules": ["q_proj"], "name": ""}
    with pytest.raises(RecipeError, match="expected an override like --key=value, got 'beta'"):
        split_overrides(["beta"])


@pytest.mark.parametrize("error, hint", [(RecipeError("bad key"), False), (DataGenError("bad line"), False),
                                          (ValueError("bad value"), True)])
def test_an_input_error_is_one_line_and_any_other_gets_the_debug_hint(capsys, error, hint):
    assert issubclass(DataGenError, DataValidationError) and issubclass(DataValidationError, InputError)

    @entry_point
    def main(argv):
        raise error

    assert main([]) == 2
    assert capsys.readouterr().err == f"error: {error}" + (" (--debug for the traceback)" if hint else "") + "\n"
