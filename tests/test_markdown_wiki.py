"""Wiki-style Markdown (issue 12): prompts, client sessions, untagged blocks, Runme cells, front matter.

Every example is a few lines taken from a file of tests/corpus (named beside it), so a rule is
tested on what runbooks really hold; the whole files are measured in tests/test_corpus_labels.py.
"""

from __future__ import annotations

import textwrap

import pytest

from runbook_tui.model import Runbook
from runbook_tui.parse.errors import RunbookError
from runbook_tui.parse.lint import lint
from runbook_tui.parse.markdown import parse_markdown
from runbook_tui.parse.yaml import parse_yaml


def md(text: str) -> Runbook:
    return parse_markdown(textwrap.dedent(text).lstrip("\n"), "wiki.md")


def commands(book: Runbook) -> list[str]:
    return [t.command for t in book.commands() if t.command is not None]


def block(body: str, info: str = "") -> Runbook:
    return md(f"# T\n\n## Steps\n\n```{info}\n{textwrap.dedent(body).strip()}\n```\n")


def kinds(book: Runbook) -> list[tuple[str, str]]:
    return [(b.kind, b.reason) for b in book.blocks]


@pytest.mark.parametrize("line, command", [
    ("worker$ /opt/gitlab/embedded/bin/redis-cli -h 10.0.0.1", "/opt/gitlab/embedded/bin/redis-cli -h 10.0.0.1"),
    ("jeroen@xps15:~/src/gitlab/chef-repo$ bundle exec knife node show worker1",  # chef-troubleshooting
     "bundle exec knife node show worker1"),
    ("pgbouncer-01-db-gprd.c.gitlab-production.internal:~$ ping master.patroni.service.consul",
     "ping master.patroni.service.consul"),  # pgbouncer-connections
    ("[root@host ~]# systemctl restart kubelet", "systemctl restart kubelet"),
    ("/ $ cd /prometheus/", "cd /prometheus/"),  # prometheus-pod-crashlooping
    ("/prometheus $ rm -rf wal/", "rm -rf wal/"),
    ("~ $ kubectl get pods", "kubectl get pods"),
    (" ~ kubectl -n monitoring exec -it prometheus-0 -c thanos-sidecar -- sh",
     "kubectl -n monitoring exec -it prometheus-0 -c thanos-sidecar -- sh"),
    ("mon-a# cat /etc/ceph/keyring-store/keyring", "cat /etc/ceph/keyring-store/keyring"),  # rook disaster-recovery
    ("PS C:\\> Get-Service -Name sshd", "Get-Service -Name sshd"),
    ("> mysql -h mysqldns.eastus.cloudapp.azure.com -u admin -p",  # azure-quickstart-templates
     "mysql -h mysqldns.eastus.cloudapp.azure.com -u admin -p"),
    (">mkdir  /home/admin/backups/", "mkdir  /home/admin/backups/"),
])
def test_every_kind_of_prompt_is_stripped(line: str, command: str) -> None:
    book = block(f"{line}\nsome output\n")
    assert commands(book) == [command]
    assert next(book.commands()).expected_output == "some output"
    assert kinds(book) == [("command", "command: prompted commands")]


def test_a_root_prompt_is_followed_by_a_program_a_comment_by_prose() -> None:
    profiling = block("""
        # perf record -e cycles --call-graph dwarf -p <pid of the process>
        # perf report > perf_report_<process/thread>
    """, "console")  # rook/performance-profiling.md
    assert commands(profiling) == ["perf record -e cycles --call-graph dwarf -p <pid of the process>",
                                   "perf report > perf_report_<process/thread>"]
    recovery = block("""
        # Use the same cluster settings as exported in step 2.
        kubectl create -f cluster.yaml
    """, "console")  # rook/disaster-recovery.md
    assert commands(recovery) == [
        "# Use the same cluster settings as exported in step 2.\nkubectl create -f cluster.yaml"]


def test_a_root_shell_opened_with_sudo_su_takes_the_root_prompts_after_it() -> None:
    book = block("""
        $ sudo su
        # /root/machines_operations.sh list
        # docker-machine ls
    """, "bash")  # gitlab-com-runbooks/ci_runner_manager_errors.md
    assert commands(book) == ["sudo su", "/root/machines_operations.sh list", "docker-machine ls"]


def test_client_input_goes_with_the_command_that_starts_the_client() -> None:
    book = block("""
        worker$ /opt/gitlab/embedded/bin/redis-cli -h 10.0.0.1
        10.0.0.1:6379> auth <password>
        10.0.0.1:6379> info replication
        # Replication
        role:slave
        10.0.0.1:6379>
    """)  # gitlab-com-runbooks/ban-an-IP-with-redis.md
    (task,) = book.commands()
    assert task.command == "/opt/gitlab/embedded/bin/redis-cli -h 10.0.0.1"
    assert task.client == "redis-cli" and task.client_input == ("auth <password>", "info replication")
    assert task.options.interactive is True  # a client needs the terminal
    assert kinds(book) == [("command", "command: prompted commands")]


@pytest.mark.parametrize("session, client, typed", [
    ("pgbouncer=# show pools;\n database | user\n(4 rows)", "psql", ("show pools;",)),
    ("gitlabhq_production=# \\set FETCH_COUNT 1\ngitlabhq_production=# \\pset pager off\nPager usage is off.",
     "psql", ("\\set FETCH_COUNT 1", "\\pset pager off")),  # gitlab-com-runbooks/postgres-data-corruption.md
    ("mysql> stop slave;\nmysql> start slave;", "mysql", ("stop slave;", "start slave;")),
    ("mongo> show dbs", "mongo", ("show dbs",)),
    ("(gdb) thread apply all bt", "gdb", ("thread apply all bt",)),
])
def test_a_session_in_an_open_client_is_what_to_type_never_a_shell_command(session: str, client: str,
                                                                          typed: tuple[str, ...]) -> None:
    book = block(session, "sh")
    assert commands(book) == []
    (task,) = book.tasks()
    assert task.kind == "manual" and task.client == client and task.client_input == typed
    assert task.text.startswith(f"Type into {client}: ")
    assert book.blocks[0].kind == "client-input"


def test_a_client_language_fence_is_client_input() -> None:
    book = block("db.collection_name.find({key: \"Value\"}).pretty()", "mongo")  # documentdb-mongo.md
    (task,) = book.tasks()
    assert task.client == "mongo" and task.client_input == ('db.collection_name.find({key: "Value"}).pretty()',)


def test_assignments_then_commands_are_one_script_only_assignments_declare() -> None:
    """howto-backup-and-restore-in-aws-rds.md: the script was dropped, and the run reported success."""
    script = block("""
        environment=production
        gds-cli aws govuk-${environment?}-fulladmin \\
          aws rds describe-db-snapshots \\
          | grep local-links-manager
    """, "sh")
    assert commands(script) == [script.find("1.1.1").command]  # type: ignore[union-attr]
    assert commands(script)[0].startswith("environment=production\ngds-cli aws")
    assert kinds(script) == [("command", "command: variables, then commands")]
    declared = block('db_instance_identifier="<e.g. local-links-manager-postgres>"', "sh")
    assert commands(declared) == [] and kinds(declared) == [("variables", "variables: only NAME=value lines")]
    variable = next(v for v in declared.variables if v.name == "db_instance_identifier")
    assert variable.default is None and variable.prompt == "e.g. local-links-manager-postgres"
    running = block("""
        latest_operation_name=$(echo $transfer_operation | jq -r .name)
    """, "sh")  # check-status-gcp-mirror-sync-job.md: an assignment that runs a command is a script
    assert commands(running) == ["latest_operation_name=$(echo $transfer_operation | jq -r .name)"]


@pytest.mark.parametrize("body, info, reason", [
    ('{\n  "metadata": {"status": "QUEUED"}\n}', "", "reference: JSON"),
    ("apiVersion: v1\nkind: Pod", "", "reference: YAML"),
    ("[global]\nfsid                = 3f271841-6188-47c1-b3fd-90fd4f978c76", "console", "reference: config"),
    ("acl is_delete method DELETE\nhttp-request deny if is_delete", "", "reference: not a command (output or text)"),
    ("select oid,datname from pg_database;", "", "reference: SQL"),
    ('max by(node) (kubelet_running_pod_count{job="kubelet"})', "", "reference: a query (PromQL)"),
    ("I0607 webhook.go:129] using dynamic certificate", "console", "reference: log output"),
    ("      --aws-profile string      aws profile to use\n  -f, --force   force", "bash", "reference: a list of flags"),
    ("rpc error: code = Unknown desc = ETCD storage quota exceeded", "sh", "reference: log output"),
    ("#!/bin/bash\nset -euo pipefail\naws dynamodb delete-item --key $1", "bash",
     "reference: a script file to save (it starts with #!)"),
    ("TF_VAR_vpc_name               # e.g. \"live-1\"", "bash", "reference: not a command (output or text)"),
    ("x = 1", "python", "reference: a python block"),
    ("sum(rate(x[5m]))", "promql", "reference: a query (PromQL)"),
])
def test_reference_blocks_say_why(body: str, info: str, reason: str) -> None:
    book = block(body, info)
    assert commands(book) == [] and kinds(book) == [("reference", reason)]


@pytest.mark.parametrize("body, info", [
    ("k exec deploy/content-data-api -- etl:main", ""),  # content-data-api-app-healthcheck-not-ok.md
    ("fly -t manager hijack -j environments-live/apply-namespace-changes-live", ""),  # tips-and-tricks.md
    ("kubectl get pods --all-namespaces -o wide", "!bash"),
    ("# Open an ssh tunnel\nglsh kube use-cluster gprd\nkubectl -n monitoring get pods", ""),
])
def test_untagged_and_bang_blocks_with_commands_are_commands(body: str, info: str) -> None:
    book = block(body, info)
    assert commands(book) == [body] and book.blocks[0].kind == "command"


def test_an_untagged_command_followed_by_output_keeps_the_output_apart() -> None:
    book = block("""
        bundle exec knife ssh "name:worker1.cluster.gitlab.com" "uptime"
        WARNING: Failed to connect to  -- Errno::ECONNREFUSED: Connection refused
    """)  # chef-troubleshooting.md
    (task,) = book.commands()
    assert task.command == 'bundle exec knife ssh "name:worker1.cluster.gitlab.com" "uptime"'
    assert task.expected_output is not None and task.expected_output.startswith("WARNING: Failed")


def test_indented_code_blocks_are_read_by_content() -> None:
    book = md("""
        # T

        ## Recycle

        To recycle the oldest node on the cluster in your current context:

            cloud-platform cluster recycle-node --oldest
    """)  # cloud-platform/recycle-node.md
    assert commands(book) == ["cloud-platform cluster recycle-node --oldest"]


def test_continuations_with_pipes_a_missing_backslash_and_heredocs() -> None:
    piped = block("""
        kubectl api-resources --verbs=list --namespaced -o name \\
        | xargs -n 1 kubectl get --show-kind --ignore-not-found -n <namespace-name>
    """)  # tips-and-tricks.md
    assert len(commands(piped)) == 1 and commands(piped)[0].endswith("-n <namespace-name>")
    missing = block("""
        gh-ost \\
        --table="mytable" \\
        --alter="drop key idx1"
        --gtid \\
        --execute
    """, "shell")  # gh-ost/revert.md
    assert commands(missing) == ['gh-ost \\\n--table="mytable" \\\n--alter="drop key idx1" \\\n--gtid \\\n--execute']
    (notice,) = missing.notices
    assert notice.code == "missing-continuation" and notice.line == 8
    heredoc = md("# T\n\n## Apply\n\n    kubectl apply -f- <<EOF\n    kind: Issuer\n    # not a prompt\n    EOF\n")
    assert commands(heredoc) == ["kubectl apply -f- <<EOF\nkind: Issuer\n# not a prompt\nEOF"]


def test_an_unclosed_fence_runs_to_the_end_of_the_file() -> None:
    book = md("# T\n\n## Ping\n\n````\nhost:~$ ping db.internal\nPING db.internal 56(84) bytes\n```\n")
    (task,) = book.commands()  # pgbouncer-connections.md: opened with four backticks, closed with three
    assert task.command == "ping db.internal" and "PING db.internal" in (task.expected_output or "")


def test_runme_cells_are_accepted_and_their_attributes_kept() -> None:
    book = md("""
        ---
        runme:
          id: 01HG9CJ12JXPWFTA90C2HT8ZX3
          version: v3
        ---

        # Setup

        ```sh {"id":"01HF7BT3HBDTRGQAQMGTJN1KP3","name":"deps","excludeFromRunAll":"true","terminalRows":"15"}
        $ brew bundle --no-lock
        ```
    """)  # runme/setup.md
    (task,) = book.commands()
    assert task.command == "brew bundle --no-lock" and task.name == "deps" and task.optional
    assert dict(task.attributes) == {"id": "01HF7BT3HBDTRGQAQMGTJN1KP3", "terminalRows": "15"}
    assert book.notices == ()
    assert book.meta("runme_id") == "01HG9CJ12JXPWFTA90C2HT8ZX3" and book.meta("runme_version") == "v3"


def test_other_tools_keys_warn_and_a_typo_of_ours_is_an_error() -> None:
    other = block("make test", 'sh {"id":"01J","vscodeCellId":"x"}')
    assert commands(other) == ["make test"]
    assert [(n.code, n.message.split(" is ")[0]) for n in other.notices] == [
        ("unknown-attribute", "attribute 'vscodeCellId'")]
    assert any(w.code == "unknown-attribute" for w in lint(other))
    with pytest.raises(RunbookError, match="unknown annotation key 'timout' \\(did you mean 'timeout'\\?\\)"):
        block("make test", "sh {timout=5m}")


def test_site_generator_front_matter_warns_instead_of_refusing() -> None:
    book = md("""
        ---
        title: Whitehall scheduled publishing
        section: Monitoring and alerting
        section: Alerts
        ---

        # <%= current_page.data.title %>

        ## Requeue

        ```sh
        make requeue
        ```
    """)  # govuk-developer-docs/whitehall-scheduled-publishing.md, cloud-platform/delete-state-lock.md
    assert book.title == "Whitehall scheduled publishing" and book.meta("section") == "Alerts"
    assert [(n.code, n.line) for n in book.notices] == [("front-matter", 4)]


def test_inline_single_words_table_cells_and_aliases() -> None:
    book = md("""
        # T

        ## Fix

        Then run `chef-client` on the node, or by running the script `scripts/check-pages-certs`.
        The name `chef-client` alone is just a name.

        | Step | Command |
        |------|---------|
        | list | `kubectl get pods -n web` |

        ```sh
        alias kc=kubectl
        ```

        - Check it: `kc get pods`
    """)
    assert commands(book) == ["chef-client", "scripts/check-pages-certs", "kubectl get pods -n web",
                              "alias kc=kubectl", "kc get pods"]


def test_an_alias_named_in_prose_is_a_program() -> None:
    book = md("""
        # T

        ## Pods

        Here `kc` is an alias for `kubectl`.

        ```
        kc get pods
        ```
    """)
    assert commands(book) == ["kc get pods"]
    assert commands(md("# T\n\n## Pods\n\n```\nkc get pods\n```\n")) == []  # unknown, no flag: not a command


def test_mentions_stay_prose() -> None:
    book = md("""
        # T

        ## Ban

        `setex` is equivalent to `set <keyname> <keyvalue> ex <expiry_period_in_s>`

        The same message may appear when running `helm install` or `helm upgrade`.

        At this point `service mysql status` may return `stop/killed`; `ceph -s` should report 1 mon.
    """)  # ban-an-IP-with-redis.md, cert-manager/webhook.md, rook/disaster-recovery.md
    assert commands(book) == []


def test_prose_that_says_run_makes_an_unknown_program_a_command() -> None:
    book = md("""
        # T

        ## Space

        It can be useful to run the command `sudo ncdu <mountpoint>` to see what is using it.
    """)
    assert commands(book) == ["sudo ncdu <mountpoint>"]


def test_check_json_names_every_blocks_kind_and_reason() -> None:
    book = md("""
        # T

        ## Notes

        ```json
        {"a": 1}
        ```

        ## Steps

        ```sh
        NAMESPACE=kube-etcd
        ```

        ```
        kubectl -n $NAMESPACE get pods
        ```
    """)
    assert book.as_dict()["blocks"] == [
        {"line": 5, "kind": "reference", "reason": "reference: JSON", "language": "json"},
        {"line": 11, "kind": "variables", "reason": "variables: only NAME=value lines", "language": "sh"},
        {"line": 15, "kind": "command", "reason": "command: reads as commands (untagged)", "language": ""},
    ]


def test_a_file_with_nothing_to_run_says_so() -> None:
    book = md("# Alerts\n\nSome text.\n\n## Meaning\n\nMore text.\n")
    assert [w.code for w in lint(book)] == ["no-steps"]


def test_nested_aliases_are_refused_before_they_expand() -> None:
    """A 2 KB YAML whose aliases expand to 216,000 commands: refused, located, at once."""
    tasks = "          - &tk {run: echo x}\n" + "          - *tk\n" * 59
    steps = "      - &st\n        title: s\n        tasks:\n" + tasks + "      - *st\n" * 59
    text = "title: bomb\nsections:\n  - &sec\n    title: S\n    steps:\n" + steps + "  - *sec\n" * 59
    with pytest.raises(RunbookError, match="aliases expand this document by [0-9,]+ nodes") as caught:
        parse_yaml(text, "bomb.yaml")
    assert (caught.value.line, caught.value.column) == (3, 5)  # the anchored section, reused 59 times
    reused = "title: T\nx-tasks: &t [{run: make}]\nsections:\n  - {title: A, steps: [{title: a, tasks: *t}]}\n"
    with pytest.raises(RunbookError, match="unknown key 'x_tasks'"):
        parse_yaml(reused, "ok.yaml")  # a little reuse is read as usual (and then checked as usual)


def test_brackets_nested_past_any_link_are_refused() -> None:
    with pytest.raises(RunbookError, match="brackets nested more than 100 deep") as caught:
        md("# T\n\n## S\n\n" + "[" * 5000 + "x\n")
    assert (caught.value.line, caught.value.column) == (5, 101)
    assert md("# T\n\n## S\n\n" + "[" * 60 + "x" + "]" * 60 + "\n\n" + "[" * 60 + "y\n").title == "T"


def test_inline_commands_in_one_paragraph_get_their_own_lines() -> None:
    """Spans are found line by line from the last one (linear, and a repeated span gets its own line)."""
    book = md("# T\n\n## S\n\nrun `kubectl get pods -n a`\nthen again `kubectl get pods -n a`\nand `df -h --total`\n")
    assert [(t.command, t.line) for t in book.commands()] == [
        ("kubectl get pods -n a", 5), ("kubectl get pods -n a", 6), ("df -h --total", 7)]


def test_a_command_in_a_reading_section_is_recorded_as_shown_not_run() -> None:
    book = md("# T\n\n## Overview\n\nThe job runs:\n\n```sh\nmake nightly --all\n```\n\n## Steps\n\n1. Check `df -h /`\n")
    assert commands(book) == ["df -h /"]
    assert kinds(book) == [("command", "command: shell block (in a reading section: shown, not run)")]
