"""The Slurm client without a cluster: conf/slurm.conf, --cmd strings, and scontrol answers replayed
from a transcript recorded on Slurm 22.05 (the test cluster of tests/slurm_cluster.py), so these run
everywhere; tests/test_slurm.py runs the same code against the real daemons."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from speechunits import slurm
from speechunits.errors import ConfigError, ExternalToolError
from speechunits.slurm import DEFAULT_CONFIG, SlurmConfig, TaskEnd, parse_cmd, wait_for_job

# `sbatch --parsable --array=0,2,5-6%2 a.sh` (task 2 exits 3), then `scontrol -o show job 1` three times, fields
# trimmed to those read; then the answer once Slurm has forgotten the job (after MinJobAge)
POLLS = [
    "JobId=1 ArrayJobId=1 ArrayTaskId=0,2,5-6%2 ArrayTaskThrottle=2 JobState=PENDING Reason=None Restarts=0 "
    "ExitCode=0:0 Command=/tmp/rq/a.sh StdOut=/dev/null\n",
    "JobId=1 ArrayJobId=1 ArrayTaskId=5-6%2 ArrayTaskThrottle=2 JobState=PENDING Reason=JobArrayTaskLimit Restarts=0 "
    "ExitCode=0:0 Command=/tmp/rq/a.sh StdOut=/dev/null\n"
    "JobId=3 ArrayJobId=1 ArrayTaskId=2 ArrayTaskThrottle=2 JobState=RUNNING Reason=None Restarts=0 ExitCode=0:0 "
    "Command=/tmp/rq/a.sh StdOut=/dev/null\n"
    "JobId=2 ArrayJobId=1 ArrayTaskId=0 ArrayTaskThrottle=2 JobState=RUNNING Reason=None Restarts=0 ExitCode=0:0 "
    "Command=/tmp/rq/a.sh StdOut=/dev/null\n",
    "JobId=1 ArrayJobId=1 ArrayTaskId=6 ArrayTaskThrottle=2 JobState=RUNNING Reason=None Restarts=0 ExitCode=0:0 "
    "Command=/tmp/rq/a.sh StdOut=/dev/null\n"
    "JobId=4 ArrayJobId=1 ArrayTaskId=5 ArrayTaskThrottle=2 JobState=RUNNING Reason=None Restarts=0 ExitCode=0:0 "
    "Command=/tmp/rq/a.sh StdOut=/dev/null\n"
    "JobId=3 ArrayJobId=1 ArrayTaskId=2 ArrayTaskThrottle=2 JobState=FAILED Reason=NonZeroExitCode Restarts=0 "
    "ExitCode=3:0 Command=/tmp/rq/a.sh StdOut=/dev/null\n"
    "JobId=2 ArrayJobId=1 ArrayTaskId=0 ArrayTaskThrottle=2 JobState=COMPLETED Reason=None Restarts=0 ExitCode=0:0 "
    "Command=/tmp/rq/a.sh StdOut=/dev/null\n",
]
FORGOTTEN = "slurm_load_jobs error: Invalid job id specified\n"


def replay(monkeypatch: pytest.MonkeyPatch, answers: list[tuple[int, str, str]]) -> list[list[str]]:
    """Make slurm's tools answer ``answers`` (rc, stdout, stderr) in turn; returns the calls made."""
    calls: list[list[str]] = []
    it: Iterator[tuple[int, str, str]] = iter(answers)

    def run_tool(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        rc, out, err = next(it)
        if check and rc:
            raise ExternalToolError(None, err)
        return subprocess.CompletedProcess(argv, rc, out, err)

    monkeypatch.setattr(slurm, "run_tool", run_tool)
    return calls


def test_default_config_turns_options_into_sbatch_flags() -> None:
    conf = SlurmConfig.parse(DEFAULT_CONFIG)
    assert conf.flags({}) == ["sbatch", "--export=ALL", "--nodes", "1", "--ntasks-per-node", "1"]
    assert conf.flags({"mem": "4G", "time": "2:00:00", "gpu": "2", "num_threads": "4"}) == [
        "sbatch", "--export=ALL", "--time", "2:00:00", "--mem-per-cpu", "4G", "--cpus-per-task", "4",
        "--gres=gpu:2", "--nodes", "1", "--ntasks-per-node", "1"]
    assert "--mem-per-cpu" not in conf.flags({"mem": "0"})  # the exact rule wins over the * rule
    assert conf.flags({"max_jobs_run": "5"}) == conf.flags({})  # kept by the launcher, no sbatch flag
    with pytest.raises(ConfigError, match=r"--partition are not defined here; it defines: --time, --mem, --num-threads"):
        conf.flags({"partition": "gpu"})


@pytest.mark.parametrize(("text", "problem"), [
    ("option mem=* --mem $0\n", "no 'command' line"),
    ("command sbatch\noption mem --mem $0\n", ":2: expected 'command SBATCH FLAGS"),
    ("command sbatch\noption gpu=1 --gres=gpu:$0\n", ":2: \\$0 only makes sense in a NAME=\\* rule"),
    ("command sbatch\ndefault gpu=0\n", "'default gpu=...' for an option no 'option gpu=' line defines"),
    ("command sbatch\noption mem=* --mem '$0\n", ":2: cannot split"),
])
def test_malformed_config_names_the_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        SlurmConfig.parse(text, source="conf/slurm.conf")


def test_config_without_a_rule_for_a_value() -> None:
    conf = SlurmConfig.parse("command sbatch\noption gpu=0\noption gpu=1 --gres=gpu:1\n")
    with pytest.raises(ConfigError, match="--gpu 2: no rule matches"):
        conf.flags({"gpu": "2"})


def test_cmd_strings() -> None:
    spec = parse_cmd("slurm --mem 4G --num-threads=4 --config 'my conf/slurm.conf'")
    assert spec.name == "slurm" and spec.options == {"mem": "4G", "num_threads": "4"}
    assert str(spec.config) == "my conf/slurm.conf"
    assert parse_cmd(str(spec)) == spec
    assert parse_cmd("local").options == {}
    for bad, problem in [("", "is empty"), ("slurm 4G", "expected --NAME VALUE"), ("slurm --mem", "needs a value"),
                         ("slurm --mem '4G", "No closing quotation")]:
        with pytest.raises(ConfigError, match=problem):
            parse_cmd(bad)


def test_polls_note_each_end_and_a_forgotten_job(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = replay(monkeypatch, [(0, POLLS[0], ""), (0, POLLS[1], ""), (0, POLLS[2], ""), (1, "", FORGOTTEN)])
    ends: list[TaskEnd] = []
    result = wait_for_job("1", [0, 2, 5, 6], on_end=ends.append, sleep=lambda s: None)
    assert calls == [["scontrol", "-o", "show", "job", "1"]] * 4
    assert [e.task for e in ends] == [0, 2, 5, 6]  # 0 and 2 at the third poll, 5 and 6 at the fourth
    assert result[0] == TaskEnd(0, "COMPLETED", 0, 0) and result[0].ok
    assert result[2] == TaskEnd(2, "FAILED", 3, 0) and result[2].describe() == "exit code 3"
    assert result[5].state == "GONE" and "forgot the job" in result[5].describe()


def test_a_submission_answer_that_is_not_a_job_id(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    replay(monkeypatch, [(0, "12345;cluster-a\n", ""), (0, "Submitted batch job 7\n", "")])
    assert slurm.submit(["sbatch"], tmp_path / "x.sh") == "12345"
    with pytest.raises(ExternalToolError, match="not a job id"):
        slurm.submit(["sbatch"], tmp_path / "x.sh")


def test_missing_tools_say_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ExternalToolError, match="scontrol not found: --cmd slurm needs Slurm's sbatch"):
        slurm.job_states("1")
