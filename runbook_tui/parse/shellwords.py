"""What a piece of shell text is: a command or not, which `$VAR`s and `<placeholders>` it uses.

These heuristics decide what the parser offers to run, so they lean towards "not a command":
an operator can always run a line by hand, but must never be offered PromQL, a metric name
or a sample of output as if it were a command.
"""

from __future__ import annotations

import re

# Programs an operator's runbook plausibly starts a command with. A word outside this list
# still counts when the rest of the line looks like a command line (a flag, a path, a $VAR).
KNOWN_PROGRAMS = frozenset(
    """
    ansible ansible-playbook apt apt-get aws az awk bash bundle cat cd chmod chown chroot
    cp crictl crio curl date dd df dig dmesg dnf docker docker-compose du echo env etcdctl
    export find flux gcloud git go grep gunzip gzip head helm helmfile host htop hostname
    iostat ip iptables java jq journalctl kill kubectl kustomize less ln ls lsblk lsof make
    mkdir mount mv mysql mysqldump nc netstat nginx nmap node nodetool npm npx nslookup oc
    openssl pg_dump pg_restore pgrep php ping pip pip3 pkill podman poetry printf ps psql
    python python3 rake redis-cli rm rsync ruby sed sh sleep ss ssh stat sudo systemctl tail
    tar tee telnet terraform test timeout top touch tr traceroute umount uname uniq unzip
    uptime uv vault velero virtctl watch wc wget which xargs yarn yum zip zsh sort cut free
    kubeadm minikube kind k9s argocd istioctl linkerd consul nomad packer gh hub glab skopeo
    buildah runc ctr nerdctl lvs vgs pvs mdadm fdisk parted xfs_repair fsck e2fsck resize2fs
    tcpdump strace ltrace perf sar vmstat mpstat pidstat ethtool mtr arp route nft firewall-cmd
    ufw sysctl modprobe lsmod service chronyc timedatectl ntpq hwclock loginctl hostnamectl
    set source exec read wait true false rabbitmqctl redis-server mongosh mongo sqlite3 cqlsh
    kafka-topics kafka-consumer-groups supervisorctl pm2 gunicorn uwsgi celery manage.py
    ./manage.py pytest tox nox ruff mypy
    knife chef-client gdb gcore vi vim nano base64 socat brew ceph rados rbd grpcurl unset alias
    ionice nice gitlab-ctl gitlab-rake gitlab-rails gitlab-psql mysqladmin mongodump mongorestore
    pwsh openssl dnf zypper apk snap
    """.split()
)

_PROGRAM_SHAPE = re.compile(r"(?:~?/|\./|\.\./)?[A-Za-z0-9_][A-Za-z0-9_.+/-]*\Z")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_ASSIGNMENT_LINE = re.compile(
    r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=('[^']*'|\"[^\"]*\"|<[^<>]*>|\S*)(?:\s+#.*)?\s*\Z"
)
_EXPRESSION_TOKENS = {"=", "==", "!=", "=~", ">=", "<=", ":", "/", "*", "+", "-", "%", "and", "or", "unless", "by"}
_PROMQL = re.compile(
    r"\b(?:sum|rate|irate|increase|avg|min|max|count|topk|bottomk|histogram_quantile|label_replace|"
    r"absent|predict_linear|delta|deriv|scalar|vector)\s*(?:by\s*)?\(|\w\{[^}]*=~?\"|\[\d+[smhdw]\]"
)
# Shell grammar no PromQL query or sample of output starts with: a compound command (`select x
# in` only, not SQL's `select a from`), or `exec` re-pointing file descriptors. Leading
# `NAME=value;` assignments are looked past first.
_LEADING_ASSIGNMENTS = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*=(?:'[^']*'|\"[^\"]*\"|[^\s;&|]*)\s*(?:;|&&)\s*)+")
_SHELL_SYNTAX = re.compile(r"(?:for|while|until|if|case)\s+\S|select\s+\w+\s+in\b|\{\s+\S|exec\s+\d*[<>]")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_DEFINED_IN_SCRIPT = re.compile(
    r"(?:^|[\s;&|(])(?:export\s+|local\s+|declare\s+(?:-\w+\s+)*|readonly\s+)?([A-Za-z_][A-Za-z0-9_]*)\+?="
    r"|\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b|\bread\b([^;&|\n]*)"
)
_PLACEHOLDER = re.compile(
    r"(?<![<\w$])<([A-Za-z][A-Za-z0-9_ .:/-]{0,80}?)>(?![>&])"
    r"|(?<![$\w{])\{([a-z][a-z0-9]*(?:[-_][a-z0-9]+)+)\}(?!\})"
)
# Set by any shell or login session; a command using them needs nothing from the operator.
ENVIRONMENT_NAMES = frozenset(
    "HOME PATH USER LOGNAME PWD OLDPWD SHELL HOSTNAME TERM LANG LC_ALL UID EUID PPID RANDOM "
    "SECONDS LINENO BASH_SOURCE IFS TMPDIR EDITOR PAGER KUBECONFIG DISPLAY COLUMNS LINES".split()
)


def command_words(line: str) -> tuple[str, list[str]]:
    """The program word of a command line (after `VAR=x` prefixes and `sudo`), and the rest."""
    words = line.split()
    while words and _ASSIGNMENT.match(words[0]):
        words = words[1:]
    if words and words[0] in ("sudo", "time", "nohup", "exec"):
        rest = words[1:]
        while words[0] == "sudo" and rest and rest[0].startswith("-"):  # `sudo -u git cmd`
            rest = rest[2:] if rest[0] in ("-u", "-g", "-C", "-D") else rest[1:]
        words = rest or words[:1]
    return (words[0], words[1:]) if words else ("", [])


def assignments(script: str) -> list[tuple[str, str]] | None:
    """The `(name, value)` pairs when every line only sets a variable (`MYPOD=<pod name>`), else None.

    Quotes around a value are removed; a `<placeholder>` value is kept as written.
    """
    pairs = []
    for line in script.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT_LINE.match(line)
        if match is None:
            return None
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs.append((match.group(1), value))
    return pairs or None


def looks_like_command(text: str, *, inline: bool = False, known: frozenset[str] = KNOWN_PROGRAMS) -> bool:
    """Whether `text` reads as something an operator would type at a shell prompt.

    `inline` is for code spans in prose: they must hold whitespace (a lone word is a name,
    not a command) and an unknown program needs a flag, a path or a variable to count.
    `known` adds the aliases a runbook defines to the programs that count without a flag.
    """
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")), "")
    if not line or (inline and not re.search(r"\s", line)):
        return False
    if not inline:
        prefix = _LEADING_ASSIGNMENTS.match(line)
        if prefix:
            line = line[prefix.end():]
        if _SHELL_SYNTAX.match(line):
            return True
    program, args = command_words(line)
    if program == "." and args and not inline:
        return True  # `. ./env.sh`: source a file into this shell
    if not program or not _PROGRAM_SHAPE.match(program) or program[0].isdigit():
        return False
    if program in known and not (args and args[0] in _EXPRESSION_TOKENS):
        return True  # `echo "status: ok"` is echo, whatever its first argument looks like
    if args and (args[0] in _EXPRESSION_TOKENS or args[0].endswith(":")) or program.endswith(":"):
        return False  # `x = 1`, `rpc error: code = ...`, `Error: ...`
    if "/" in program and not program.startswith(("/", "./", "../", "~/")):
        return False
    if program.startswith("/") and program.count("/") == 1 and "." not in program:
        return False  # `/feed subscribe x`: a chat slash command, not a program in the root directory
    if program in known or program.startswith(("/", "./", "../", "~/")):
        return True
    if _PROMQL.search(line):
        return False
    if "." in program or program[0].isupper():
        return False
    if inline:
        return any(arg.startswith("-") or "/" in arg or "$" in arg for arg in args) or "|" in line
    return True


def is_shell_grammar(line: str) -> bool:
    """A compound command (`for`/`while`/`if`/`case`, `{ ...; }`), after any `NAME=value;` prefix."""
    prefix = _LEADING_ASSIGNMENTS.match(line)
    return bool(_SHELL_SYNTAX.match(line[prefix.end():] if prefix else line))


def runs_command(script: str) -> bool:
    """Whether an assignment in the script runs a command (`NAME=$(...)` or backticks): then it is a script."""
    return "$(" in script or "`" in script


def _unquoted(script: str, *, double: bool = False) -> str:
    """The script with single-quoted text blanked out (the shell expands nothing in there).

    `double` blanks double-quoted text too, for finding the words a command is given.
    """
    out: list[str] = []
    quote: str | None = None
    for char in script:
        if quote is None and (char == "'" or (double and char == '"')):
            quote = char
            out.append(" ")
        elif char == quote:
            quote = None
            out.append(" ")
        else:
            out.append(" " if quote else char)
    return "".join(out)


def command_variables(script: str) -> tuple[str, ...]:
    """`$VAR`/`${VAR}` names the script reads and does not set itself, in first-use order.

    `${VAR:-default}` and `${VAR-default}` need nothing, nor do positional and special
    parameters, nor names that every shell session has (HOME, PATH...).
    """
    text = _unquoted(script)
    defined: set[str] = set()
    for assigned, loop, read_args in _DEFINED_IN_SCRIPT.findall(_unquoted(script, double=True)):
        defined.update(name for name in (assigned, loop) if name)
        # `read -p "prompt" -r a b`: the names are the trailing identifiers
        for word in reversed(read_args.split()):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
                break
            defined.add(word)
    seen: dict[str, None] = {}
    for match in _VAR.finditer(text):
        name = match.group(1) or match.group(3)
        modifier = match.group(2) or ""
        if modifier.startswith((":-", "-", ":=", "=")) or name in defined or name in ENVIRONMENT_NAMES:
            continue
        seen.setdefault(name)
    return tuple(seen)


def command_placeholders(script: str) -> tuple[str, ...]:
    """`<placeholder>` and `{placeholder-name}` tokens an operator must replace, as written.

    Heredocs (`<<EOF`), redirects (`< file`), `${VAR}` and brace expansions (`{a,b}`) are not
    placeholders; the token keeps its brackets so the engine can substitute it exactly.
    """
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(script):
        inner = match.group(1) or match.group(2)
        if inner.endswith(" "):
            continue
        seen.setdefault(match.group(0))
    return tuple(seen)


def placeholder_label(token: str) -> str:
    """What the operator is asked for: the placeholder without its brackets."""
    return token[1:-1]
