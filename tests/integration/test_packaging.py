"""The dependency list is the only place packages are named.

scripts/install-deps lists every Debian package; the Makefile, .ci/run, the
Dockerfile and the GitHub workflow must install through it, and the runtime
set must cover every shared library the built binary actually links.
"""
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


if __name__ == "__main__":
    unittest.main()
