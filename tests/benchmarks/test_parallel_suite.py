"""benchmarks/parallel_suite.py: the rate it reads from a log, and the commands of its arms."""
import json

import pytest

from benchmarks import parallel_suite


def test_rate_is_images_between_the_first_and_last_log_line(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"step": 100, "elapsed_s": 10.0}, {"step": 200, "elapsed_s": 14.0}, {"step": 400, "elapsed_s": 20.0},
             {"event": "checkpoint"}]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert parallel_suite.rate_from_log(log, 64) == pytest.approx(300 * 64 / 10.0)
    log.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(RuntimeError, match="two log lines"):
        parallel_suite.rate_from_log(log, 64)


def test_arms_differ_only_in_processes_and_threads(tmp_path):
    one, two, ddp = (parallel_suite.arm_command(a, tmp_path / "x.npy", 32, 600, 64, tmp_path / "o", 100)
                     for a in parallel_suite.ARMS)
    assert one[one.index("--threads") + 1] == "1" and two[two.index("--threads") + 1] == "2"
    assert ddp[ddp.index("--threads") + 1] == "1" and ddp[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node" in ddp and ddp[ddp.index("--nproc_per_node") + 1] == "2"
    tail = lambda c: c[c.index("jointvae_fast.train"):]  # noqa: E731
    assert [x for x in tail(one) if x != "1"] == [x for x in tail(two) if x != "2"]
    assert tail(ddp) == tail(one)
    assert one[one.index("--batch-size") + 1] == "64" and one[one.index("--preset") + 1] == "fashion-mnist"
