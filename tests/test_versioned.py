"""In-place, versioned append into a DVC-tracked training set: real git, real DVC, a local remote."""
import hashlib
from pathlib import Path

import pytest
from filelock import FileLock

from ganaug.pipeline.append import append
from ganaug.pipeline.evaluate import evaluate
from ganaug.pipeline.filter import filter_candidates
from ganaug.pipeline.generate import generate
from ganaug.pipeline.ingest import ingest
from ganaug.pipeline.store.manifest import read_manifest
from ganaug.pipeline.store.scm import VersioningError
from ganaug.pipeline.store.versioned import BATCHES_DIR
from tests.conftest import make_shapes, sh, tiny_params


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def accepted(trained):
    p = tiny_params(Path(trained.paths.raw).parent, filter={"mode": "none"})
    generate(p)
    filter_candidates(p)
    evaluate(p)  # the gate append acts on (off in tiny params: every accepted image goes in)
    return p


def _evaluated(params):
    evaluate(params)
    return params


def in_place(p, host, **append):
    """The params of an in-place append, and the gate evaluated under them (in place, the
    synthetic arm is not filled, as the batch is not)."""
    params = tiny_params(Path(p.paths.raw).parent, filter={"mode": "none"},
                         append={"target": str(host / "train"), **append})
    evaluate(params)
    return params


def test_append_commits_tags_pushes_and_is_idempotent(accepted, host, tmp_path):
    p = in_place(accepted, host)
    before = tree_hashes(host / "train")
    result = append(p)
    n = len(read_manifest(p.paths.accepted))
    assert result["changed"] and result["pushed"] is True and result["images"] == n > 0
    batch = host / "train" / BATCHES_DIR / result["batch"]
    assert len(read_manifest(batch, check_files=True)) == n
    # The real images are untouched; the batch is all that was added.
    after = tree_hashes(host / "train")
    assert {k: v for k, v in after.items() if not k.startswith(BATCHES_DIR)} == before
    log = sh(host, "git", "log", "-1", "--format=%s")
    assert f"append batch {result['batch']} ({n} synthetic images" in log and "no threshold" in log
    assert sh(host, "git", "tag").split() == [result["tag"]]
    assert "up to date" in sh(host, "dvc", "status") or sh(host, "dvc", "status").strip() == ""
    assert sh(host, "git", "status", "--porcelain").strip() == ""

    # The same batch again adds nothing: no new commit, no new files.
    head = sh(host, "git", "rev-parse", "HEAD")
    again = append(p)
    assert not again["changed"] and sh(host, "git", "rev-parse", "HEAD") == head
    assert tree_hashes(host / "train") == after

    # A fresh clone pulls exactly the same files from the remote.
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(host), str(clone))
    sh(clone, "dvc", "pull", "-q")
    assert tree_hashes(clone / "train") == after

    # Ingest of the tracked set never takes the synthetic batch as real data.
    q = tiny_params(tmp_path / "reingest", paths={"raw": str(host / "train")})
    report = ingest(q)
    assert report["skipped_synthetic"] == n and report["images"] == 18


def test_rollback_restores_the_previous_set(accepted, host):
    before = tree_hashes(host / "train")
    result = append(in_place(accepted, host))
    sh(host, "git", "revert", "--no-edit", result["tag"])
    sh(host, "dvc", "checkout", "-q", "train.dvc")
    assert tree_hashes(host / "train") == before
    assert not (host / "train" / BATCHES_DIR / result["batch"]).exists()


def test_refuses_untracked_or_dirty_sets(accepted, host, tmp_path):
    plain = tmp_path / "plain"
    make_shapes(plain, {"circle": 3})
    with pytest.raises(VersioningError, match="not inside a git repository"):
        append(_evaluated(tiny_params(Path(accepted.paths.raw).parent, append={"target": str(plain)})))
    (host / "other").mkdir()
    with pytest.raises(VersioningError, match=r"other: not DVC-tracked \(no other.dvc\)"):
        append(_evaluated(tiny_params(Path(accepted.paths.raw).parent, append={"target": str(host / "other")})))

    stray = host / "train" / "circle" / "stray.png"
    stray.write_bytes((host / "train" / "circle" / "circle-000.png").read_bytes()[::-1])
    head = sh(host, "git", "rev-parse", "HEAD")
    with pytest.raises(VersioningError, match="differs from train.dvc"):
        append(in_place(accepted, host))
    assert not (host / "train" / BATCHES_DIR).exists() and sh(host, "git", "rev-parse", "HEAD") == head
    stray.unlink()

    (host / "train.dvc").write_text((host / "train.dvc").read_text() + "# edited\n")
    with pytest.raises(VersioningError, match="train.dvc: uncommitted changes in git"):
        append(in_place(accepted, host))


def test_unreachable_remote_keeps_the_local_commit(accepted, host, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the remote folder should be")
    sh(host, "dvc", "remote", "modify", "store", "url", str(blocker / "store"))
    sh(host, "git", "commit", "-q", "-am", "point the remote somewhere unreachable")
    result = append(in_place(accepted, host))
    assert result["changed"] and result["pushed"] is False and "dvc push" in result["push_error"]
    assert sh(host, "git", "rev-parse", "HEAD").strip() == result["commit"]
    # Once the remote is back, running the same batch again pushes what was left behind.
    sh(host, "dvc", "remote", "modify", "store", "url", str(tmp_path / "remote"))
    again = append(in_place(accepted, host))
    assert not again["changed"] and again["pushed"] is True and again["commit"] == result["commit"]


def test_a_second_append_waits_for_the_lock(accepted, host):
    with FileLock(str(host / ".git" / "ganaug-append.lock")):
        with pytest.raises(VersioningError, match="another append holds"):
            append(in_place(accepted, host, lock_timeout_s=0.2))
    assert not (host / "train" / BATCHES_DIR).exists()


def test_closed_gate_creates_no_version(accepted, host):
    """evaluate decided the batch does not help: no batch folder, no commit, no tag; success."""
    closed = tiny_params(Path(accepted.paths.raw).parent, filter={"mode": "none"},
                         evaluate={"min_gain": 1.0}, append={"target": str(host / "train")})
    assert not evaluate(closed)["gate"]["passed"]
    head, files = sh(host, "git", "rev-parse", "HEAD"), tree_hashes(host / "train")
    result = append(closed)
    assert not result["changed"] and result["commit"] is None and "does not beat" in result["gate"]["reason"]
    assert sh(host, "git", "rev-parse", "HEAD") == head and sh(host, "git", "tag") == ""
    assert tree_hashes(host / "train") == files


def test_two_concurrent_appends_of_the_same_batch_add_it_once(accepted, host):
    """Both pass the lock in turn; the second finds the batch there (its checks run under the
    lock), not a misleading "folder differs"."""
    import subprocess
    import sys

    from tests.conftest import tiny_overrides

    in_place(accepted, host)  # the gate, evaluated under the in-place params
    args = [a for item in tiny_overrides(Path(accepted.paths.raw).parent, filter={"mode": "none"},
                                         append={"target": str(host / "train")}) for a in ("--set", item)]
    head = sh(host, "git", "rev-parse", "HEAD")
    runs = [subprocess.Popen([sys.executable, "-m", "ganaug.pipeline.plumbing.cli", "append", *args], cwd=host,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    said = sorted("already appended" in out for out, _ in outs)
    assert said == [False, True], outs
    assert len(sh(host, "git", "rev-list", f"{head.strip()}..HEAD").split()) == 1
    assert sh(host, "git", "status", "--porcelain").strip() == ""


def test_same_images_under_other_params_append_nothing(accepted, host):
    """Identity comes from the images: generating again with another batch size (or any knob
    that does not change which images are made) appends nothing the second time."""
    first = append(in_place(accepted, host))
    assert first["changed"]
    head = sh(host, "git", "rev-parse", "HEAD")
    other = tiny_params(Path(accepted.paths.raw).parent, filter={"mode": "none"},
                        generate={"batch_size": 7}, append={"target": str(host / "train")})
    generate(other)
    filter_candidates(other)
    again = append(other)
    assert again["batch"] == first["batch"] and not again["changed"]
    assert sh(host, "git", "rev-parse", "HEAD") == head


def test_a_journal_whose_batch_climbs_out_deletes_nothing(accepted, host):
    """Issue 28: a journal naming `ganaug-batches/../../train` as its batch made recovery delete
    the tracked images ("ganaug-batches" was one of the path's parts). A journal is proved to be
    append's own (a batch id folder directly under the target's batch root, its tag that id's)
    or refused, with nothing touched."""
    import json as _json

    p = in_place(accepted, host)
    before = tree_hashes(host / "train")
    head = sh(host, "git", "rev-parse", "HEAD").strip()
    journal = host / ".git" / "ganaug-append.json"
    hostile = [
        {"batch": f"train/{BATCHES_DIR}/../../train", "tag": "ganaug-000000000000"},
        {"batch": f"elsewhere/{BATCHES_DIR}/000000000000", "tag": "ganaug-000000000000"},
        {"batch": f"train/{BATCHES_DIR}/000000000000", "tag": "ganaug-111111111111"},
    ]
    for case in hostile:
        journal.write_text(_json.dumps({**case, "dvc_file": "train.dvc", "head": head, "message": "x"}))
        with pytest.raises(VersioningError, match="not a ganaug append journal"):
            append(p)
        assert tree_hashes(host / "train") == before
    journal.unlink()
    assert append(p)["changed"]


def test_append_commits_only_its_own_paths(accepted, host):
    """Issue 28: a user's uncommitted line in the .gitignore beside the set was swept into
    ganaug's batch commit (and a rollback's restore discarded it); now append refuses and touches
    nothing. A file the user staged elsewhere stays staged and out of ganaug's commit."""
    p = in_place(accepted, host)
    gitignore = host / ".gitignore"
    original = gitignore.read_text()
    gitignore.write_text(original + "*.bak\n")
    head = sh(host, "git", "rev-parse", "HEAD")
    with pytest.raises(VersioningError, match=r"\.gitignore: uncommitted changes"):
        append(p)
    assert gitignore.read_text() == original + "*.bak\n" and sh(host, "git", "rev-parse", "HEAD") == head
    gitignore.write_text(original)
    (host / "notes.txt").write_text("mine\n")
    sh(host, "git", "add", "notes.txt")
    result = append(p)
    assert result["changed"]
    committed = sh(host, "git", "show", "--name-only", "--format=", "HEAD").split()
    assert "notes.txt" not in committed and "train.dvc" in committed
    assert sh(host, "git", "status", "--porcelain", "--", "notes.txt").startswith("A ")
