"""The GitHub workflows: CI fetches nothing of its own (./build.sh test
does), and the nightly one runs the long checks with real arguments."""
import shlex

import realparts
import yaml

from tests.bench.cli import build_parser

WORKFLOWS = realparts.ROOT / ".github" / "workflows"


def steps(name):
    jobs = yaml.safe_load((WORKFLOWS / name).read_text())["jobs"]
    return {job: spec["steps"] for job, spec in jobs.items()}


def commands(step_list):
    return [shlex.split(line, comments=True)
            for step in step_list
            for line in step.get("run", "").replace("\\\n", " ").split("\n")
            if line.strip()]


def test_ci_leaves_the_real_parts_to_build_sh():
    text = (WORKFLOWS / "ci.yml").read_text()
    for word in ("git clone", "git fetch", "PANDA_KLIPPER", "PANDA_OPKG"):
        assert word not in text
    for repo in realparts.REPOS.values():
        assert repo.ref not in text and repo.url not in text
    assert [".ci/run"] in [c[:1] for c in commands(steps("ci.yml")["test"])]


def test_nightly_runs_the_full_bench_and_10000_safety_examples():
    workflow = yaml.safe_load((WORKFLOWS / "nightly.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert {"schedule", "workflow_dispatch"} <= set(triggers)
    runs = {job: [c for c in commands(s) if c[:1] == ["./build.sh"]]
            for job, s in steps("nightly.yml").items()}
    parser = build_parser()
    (bench,) = runs["bench"]
    args = parser.parse_args(bench[2:-2])   # without "< /dev/null"
    assert bench[1] == "bench" and not args.quick and args.tree is None
    assert args.reconnects == 10000 and args.safety is None
    (safety,) = runs["safety"]
    args = parser.parse_args(safety[2:-2])
    shards = workflow["jobs"]["safety"]["strategy"]["matrix"]["shard"]
    assert int(args.safety) * len(shards) == 10000
    for job in ("bench", "safety"):
        uploads = [s for s in steps("nightly.yml")[job]
                   if s.get("uses", "").startswith("actions/upload-artifact")]
        assert uploads and uploads[0]["if"] == "always()"
        assert "dist/bench/" in uploads[0]["with"]["path"]
