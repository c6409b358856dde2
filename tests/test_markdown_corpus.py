"""Real public runbooks nobody here wrote: all parse, and what is called a command is what an operator runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runbook_tui.model import Runbook
from runbook_tui.parse import load_runbook
from tests.paths import CORPUS

CORPUS_FILES = sorted(CORPUS.glob("*/*.md"))


def parse(relative: str) -> Runbook:
    return load_runbook(CORPUS / relative)


def commands(book: Runbook) -> list[str]:
    return [t.command for t in book.commands() if t.command is not None]


def test_the_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 30


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_corpus_file_parses(path) -> None:
    book = load_runbook(path)
    assert book.title
    for task in book.commands():
        assert task.command and task.command.strip() == task.command.strip("\n").strip()
        assert not task.command.lstrip().startswith("$ "), "prompts are stripped"


def test_check_exits_zero_on_the_whole_corpus() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runbook_tui", "check", *map(str, CORPUS_FILES)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok:") == len(CORPUS_FILES)
    assert "Traceback" not in result.stderr


def test_console_prompts_are_stripped_and_output_is_not_a_command() -> None:
    book = parse("openshift/KubeSchedulerDown.md")
    found = commands(book)
    assert "oc get clusteroperators.config.openshift.io kube-scheduler" in found
    assert "oc logs -n openshift-kube-scheduler-operator $POD_NAME" in found
    assert all(not c.startswith(("NAME", "$")) for c in found)
    assert book.required_variables == ("POD_NAME",)


def test_promql_in_console_and_sh_blocks_is_reference_not_command() -> None:
    etcd = parse("openshift/etcdDatabaseQuotaLowSpace.md")
    assert commands(etcd) == [
        "oc rsh -c etcdctl -n openshift-etcd $(oc get pod -l app=etcd -oname -n openshift-etcd | "
        "awk -F\"/\" 'NR==1{ print $2 }')",
        "etcdctl version",
        "etcdctl endpoint status -w table",
        "etcdctl defrag",
    ]
    burn = parse("openshift/KubeAPIErrorBudgetBurn.md")
    assert not any("label_replace" in c or c.startswith("sum by") for c in commands(burn))
    assert commands(burn)[0] == "oc adm must-gather -- /usr/bin/gather_audit_logs"
    diagnosis = next(s for s in burn.sections if s.title == "Diagnosis")
    assert not diagnosis.procedural  # only PromQL there


def test_continuation_lines_join_and_sample_output_stays_out() -> None:
    book = parse("openshift/TargetDown.md")
    first = commands(book)[0]
    assert first == (
        "oc -n $NAMESPACE logs -l 'app.kubernetes.io/name=prometheus' --tail=-1 | \\\n"
        "grep 'Failed to determine correct type of scrape target.*' \\\n"
        "| sort | uniq -c | sort -n"
    )
    task = next(book.commands())
    assert task.expected_output is not None and task.expected_output.startswith('msg="Failed')
    assert not any(c.startswith("notAfter=") for c in commands(book))
    assert "openssl x509 -noout -enddate -in certificate.crt" in commands(book)


def test_inline_commands_in_bullets_with_undefined_variables() -> None:
    book = parse("prometheus-operator/KubePodCrashLooping.md")
    assert commands(book) == [
        "kubectl -n $NAMESPACE get pod $POD",
        "kubectl -n $NAMESPACE describe pod $POD",
        "kubectl -n $NAMESPACE logs $POD -c $CONTAINER",
    ]
    assert book.required_variables == ("NAMESPACE", "POD", "CONTAINER")
    assert book.meta("weight") == "20"  # Hugo front matter is kept as metadata


def test_placeholders_are_found() -> None:
    book = parse("prometheus-operator/KubePersistentVolumeFillingUp.md")
    assert book.placeholders == ("<my-namespace>", "<my-pvc>")
    assert "kubectl -n <my-namespace> edit pvc <my-pvc>" in commands(book)


def test_root_prompts_and_prefixed_prompts() -> None:
    book = parse("openshift/KubeletHealthState.md")
    found = commands(book)
    assert "systemctl restart kubelet.service" in found
    assert "systemctl reboot" in found
    assert "cat etc/hosts" in found  # from `sh-5.1# cat etc/hosts`
    assert not any(c.startswith("127.0.0.1") for c in found)


def test_comments_in_shell_blocks_are_not_root_prompts() -> None:
    book = parse("openshift/KubeAPIErrorBudgetBurn.md")
    scripts = [c for c in commands(book) if "--failed-only" in c]
    assert len(scripts) == 1 and scripts[0].startswith("# find the top-10 users")
    assert not any(c.startswith("find the top-10") for c in commands(book))


def test_assignment_blocks_declare_variables() -> None:
    book = parse("openshift/podDebug.md")
    mypod = next(v for v in book.variables if v.name == "MYPOD")
    assert mypod.default is None and mypod.prompt == "pod identified as the problem pod"
    assert "oc get pod/${MYPOD} -o wide" in commands(book)
    assert "MYPOD" not in book.required_variables
    assert not any(c.startswith("MYPOD=") for c in commands(book))
    etcd = parse("prometheus-operator/etcdBackendQuotaLowSpace.md")
    namespace = next(v for v in etcd.variables if v.name == "NAMESPACE")
    assert namespace.default == "kube-etcd"


def test_prose_mentions_are_not_commands() -> None:
    book = parse("prometheus-operator/KubeletDown.md")
    assert "kubectl exec" not in commands(book) and "kubectl logs" not in commands(book)
    acm = parse("openshift/ACMThanosCompactHalted.md")
    assert not any(c.startswith(("no such host", "acm_thanos")) for c in commands(acm))
    assert "oc logs -n open-cluster-management-observability observability-thanos-compact-0" in commands(acm)


def test_hugo_ref_links_are_related_runbooks() -> None:
    book = parse("prometheus-operator/NodeFilesystemAlmostOutOfSpace.md")
    assert [r.target for r in book.related] == ["./NodeFilesystemFilesFillingUp.md"]


def test_a_script_opening_with_an_assignment_and_a_loop_is_a_command() -> None:
    """"To find the database leader, you can run this script:" and a one-line `for` loop."""
    book = parse("openshift/NorthboundStaleAlert.md")
    script = book.find("4.5.1")
    assert script is not None and script.command is not None
    assert script.command.startswith('LEADER="not found"; for MASTER_POD in $(oc -n openshift-ovn-kubernetes')
    assert script.command.endswith('echo "nbdb leader ${LEADER}"')
    assert script.variables == ()  # LEADER, MASTER_POD and RAFT_ROLE are the script's own
