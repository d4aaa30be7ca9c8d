"""The dependency list is the only place packages are named.

scripts/install-deps lists every Debian package; the Makefile, .ci/run, the
Dockerfile and the GitHub workflow must install through it, and the runtime
set must cover every shared library the built binary actually links. Every
npm package in package-lock.json runs on Debian bookworm's own Node.js.
"""
import json
import os
import re
import subprocess
import unittest

REPO = os.environ.get("DOCFLOW_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BINARY = os.environ.get("DOCFLOW_BIN", os.path.join(REPO, "build", "src", "docflow"))
INSTALL_DEPS = os.path.join(REPO, "scripts", "install-deps")

# Present in every Debian image, slim included (Essential: yes or required by apt).
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}


def listed(package_set):
    out = subprocess.run([INSTALL_DEPS, "--list", package_set], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def dependency_closure(packages):
    """The packages apt installs along with `packages` (their Depends and
    Pre-Depends, recursively, as recorded by dpkg on this machine)."""
    seen, pending = set(), list(packages)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        out = subprocess.run(["dpkg-query", "-W", "-f=${Pre-Depends}, ${Depends}", name],
                             capture_output=True, text=True)
        if out.returncode != 0:
            continue  # not installed here: nothing more to learn from it
        for clause in out.stdout.split(","):
            for alternative in clause.split("|"):
                dep = alternative.strip().split(" ")[0].split(":")[0]
                if dep:
                    pending.append(dep)
    return seen


def read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


class DependencyListTest(unittest.TestCase):
    def test_dockerfile_installs_only_through_the_list(self):
        dockerfile = read("Dockerfile")
        self.assertNotRegex(dockerfile, r"apt-get\s+install", "the Dockerfile names packages of its own")
        stages = re.split(r"(?m)^FROM ", dockerfile)[1:]
        self.assertGreaterEqual(len(stages), 2, "expected a build stage and a runtime stage")
        self.assertIn("install-deps build", stages[0])
        self.assertIn("install-deps runtime", stages[-1])
        self.assertIn("bookworm-slim", stages[-1].splitlines()[0])

    def test_ci_and_makefile_use_the_list(self):
        self.assertIn("scripts/install-deps", read(".ci", "run"))
        self.assertIn("scripts/install-deps", read("Makefile"))
        self.assertIn("scripts/install-deps", read(".github", "workflows", "ci.yml"))
        for name in (".ci/run", "Makefile", ".github/workflows/ci.yml"):
            self.assertNotRegex(read(name), r"apt-get\s+install", name + " names packages of its own")

    def test_one_stop_timeout_everywhere(self):
        # The Dockerfile's advice, the operations guide and CI's docker job name one grace period.
        found = {
            "Dockerfile": re.findall(r"--stop-timeout (\d+)", read("Dockerfile")),
            "docs/operations.md": re.findall(r"--stop-timeout (\d+)|stop_grace_period: (\d+)s",
                                             read("docs", "operations.md")),
            "ci.yml": re.findall(r"docker stop --time (\d+)", read(".github", "workflows", "ci.yml")),
        }
        values = {name: {v if isinstance(v, str) else "".join(v) for v in found[name]} for name in found}
        for name, seen in values.items():
            self.assertEqual(len(seen), 1, "%s names %s" % (name, seen or "no stop timeout"))
        self.assertEqual(len(set.union(*values.values())), 1, values)

    def test_every_package_is_listed_once(self):
        out = subprocess.run([INSTALL_DEPS, "--list", "build"], check=True, capture_output=True, text=True)
        build = out.stdout.split()
        self.assertEqual(len(build), len(set(build)))
        for package_set in ("build", "runtime", "test"):
            self.assertTrue(listed(package_set), package_set + " is empty")

    def test_runtime_set_covers_the_linked_libraries(self):
        ldd = subprocess.run(["ldd", BINARY], check=True, capture_output=True, text=True).stdout
        paths = re.findall(r"=> (/\S+)", ldd)
        self.assertTrue(paths, "ldd found no libraries")
        runtime = dependency_closure(listed("runtime")) | BASE_PACKAGES
        for path in paths:
            real = os.path.realpath(path)
            owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
            if owner.returncode != 0:  # /lib vs /usr/lib: dpkg knows one spelling
                owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
            self.assertEqual(owner.returncode, 0, "no package owns " + path)
            package = owner.stdout.split(":")[0]
            self.assertIn(package, runtime, f"{path} comes from {package}, missing from the runtime set")


# The oldest Node.js Debian bookworm has shipped (18.19.0; bookworm-security
# has 18.20.4): what `apt-get install nodejs` gives a user.
BOOKWORM_NODE = (18, 19, 0)
# Its `npm` package: 9.2.0. A package whose engines.npm it fails warns at every install.
BOOKWORM_NPM = (9, 2, 0)


def _partial(text):
    """'18', '18.2', '18.2.1', 'v18.x' -> a list of up to three ints (x, X
    and * end the list)."""
    parts = []
    for piece in text.lstrip("v=").split("-")[0].split("+")[0].split("."):
        if piece in ("x", "X", "*", ""):
            break
        parts.append(int(piece))
    return parts[:3]


def _bump(parts):
    """The first version past every version `parts` matches: 18 -> 19.0.0, 18.2 -> 18.3.0."""
    head = parts[:-1] + [parts[-1] + 1]
    return tuple(head + [0] * (3 - len(head)))


def _comparators(token):
    """One semver comparator token as a list of (operator, version) pairs."""
    op = re.match(r"^(>=|<=|>|<|=|\^|~)?", token).group(0)
    parts = _partial(token[len(op):])
    full = tuple(parts + [0] * (3 - len(parts)))
    if not parts:
        return [("<", (0, 0, 0))] if op in ("<", ">") else []
    if op in ("", "="):
        return [("==", full)] if len(parts) == 3 else [(">=", full), ("<", _bump(parts))]
    if op == "^":
        first = next((i for i, p in enumerate(parts) if p != 0), len(parts) - 1)
        return [(">=", full), ("<", _bump(parts[:first + 1]))]
    if op == "~":
        return [(">=", full), ("<", _bump(parts[:2] if len(parts) > 1 else parts))]
    if op == ">" and len(parts) < 3:
        return [(">=", _bump(parts))]
    if op == "<=" and len(parts) < 3:
        return [("<", _bump(parts))]
    return [(op, full)]


def satisfies(version, node_range):
    """Whether `version` (a tuple) is in the npm semver range `node_range`:
    || alternatives of space-separated comparators, hyphen ranges, ^, ~ and
    x-ranges, as package.json "engines" fields write them."""
    compare = {"==": lambda a, b: a == b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
               "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
    for alternative in node_range.split("||"):
        alternative = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alternative.strip())
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alternative)
        tokens = [">=" + hyphen.group(1), "<=" + hyphen.group(2)] if hyphen else alternative.split()
        pairs = [pair for token in tokens for pair in _comparators(token)]
        if all(compare[op](version, bound) for op, bound in pairs):
            return True
    return False


class NodeEnginesTest(unittest.TestCase):
    """Debian bookworm's `nodejs` is 18: a package that declares a newer
    engine may refuse to start there (playwright-core 1.65 did)."""

    def test_the_range_check(self):
        for node_range in (">=18", ">= 10.16.0", "^18.18.0 || ^20.9.0 || >=21.1.0", "*", "18.x",
                           ">=14.17 <19", "14 || >=16.14", "16 - 18", "~18.19.0", ">=12 <=18"):
            self.assertTrue(satisfies(BOOKWORM_NODE, node_range), node_range)
        for node_range in (">=20", ">= 20.16.0", ">=22.12.0 || >=20.19.0 <21.0.0", "^20.9.0",
                           ">18", "<18", "~18.20.0", "19 - 22", "^16.0.0 || ^20"):
            self.assertFalse(satisfies(BOOKWORM_NODE, node_range), node_range)

    def test_every_locked_package_runs_on_bookworm_node(self):
        with open(os.path.join(REPO, "package-lock.json"), encoding="utf-8") as f:
            lock = json.load(f)
        packages = lock["packages"]
        self.assertGreater(len(packages), 1, "package-lock.json locks nothing")
        too_new = {}
        for name, package in packages.items():
            engines = package.get("engines")
            if not isinstance(engines, dict):  # some old packages wrote a list
                continue
            for engine, have in (("node", BOOKWORM_NODE), ("npm", BOOKWORM_NPM)):
                wanted = engines.get(engine)
                if wanted and not satisfies(have, wanted):
                    too_new["%s (%s)" % (name or "(root)", engine)] = wanted
        self.assertEqual(too_new, {}, "these locked packages need a newer Node.js or npm than bookworm's")

    def test_install_deps_takes_node_from_debian(self):
        script = read("scripts", "install-deps")
        self.assertNotRegex(script, r"nodesource|deb\.nodesource|nvm|n lts")
        self.assertIn("ensure_debian_node", script)


if __name__ == "__main__":
    unittest.main()
