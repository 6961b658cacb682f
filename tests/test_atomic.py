import pytest

from dforce import atomic


def test_new_directory_replaces_whole_trees_and_failures_keep_the_old(tmp_path):
    target = tmp_path / "d"
    with atomic.new_directory(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.txt").write_text("one")
    assert (target / "sub" / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic.new_directory(target) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert (target / "sub" / "a.txt").read_text() == "one" and not (target / "b.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"], "no temporary directories left behind"


def test_write_text_and_recover(tmp_path):
    atomic.write_text(tmp_path / "f", "x")
    assert (tmp_path / "f").read_text() == "x"
    (tmp_path / "m.old").mkdir()
    assert atomic.recover(tmp_path / "m").is_dir(), "an interrupted replace is rolled back"


def test_atomic_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    import os
    import stat

    from dforce import atomic

    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.json", "{}")
        with atomic.new_directory(tmp_path / "model") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
