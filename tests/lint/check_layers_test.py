"""scripts/check-layers: on the real tree, and on small trees that break the
layer table of docs/architecture.md in each way it must notice."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = pathlib.Path(os.environ.get("DOCFLOW_REPO", pathlib.Path(__file__).resolve().parents[2]))
SCRIPT = REPO / "scripts" / "check-layers"


def run(repo):
    return subprocess.run([sys.executable, str(SCRIPT), str(repo)], capture_output=True, text=True, timeout=60)


class CheckLayersTest(unittest.TestCase):
    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="check-layers-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        # The real table, so that the parse of the one source is tested too.
        (self.tmp / "docs").mkdir()
        shutil.copy(REPO / "docs" / "architecture.md", self.tmp / "docs" / "architecture.md")
        self.write("src/CMakeLists.txt",
                   "docflow_module(core\n  SOURCES core/a.cpp)\n"
                   "docflow_module(store\n  SOURCES store/s.cpp\n  PUBLIC_DEPS docflow_core\n"
                   "  PRIVATE_DEPS SQLite::SQLite3 docflow_warnings)\n")
        self.write("src/core/a.hpp", "#pragma once\n")
        self.write("src/store/s.cpp", '#include "store/s.hpp"\n#include "core/a.hpp"\n#include <vector>\n')
        self.write("src/api/h.cpp", '#include "http/message.hpp"\n#include "store/database.hpp"\n')

    def write(self, relative, text):
        path = self.tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def test_the_repository_keeps_its_layers(self):
        result = run(REPO)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_a_tree_within_the_layers_passes(self):
        result = run(self.tmp)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_an_upward_include_fails_naming_file_and_line(self):
        self.write("src/store/s.cpp", '#include "store/s.hpp"\n\n#include "api/services.hpp"\n')
        result = run(self.tmp)
        self.assertEqual(result.returncode, 1)
        self.assertIn('src/store/s.cpp:3: store (layer 1) may not include "api/services.hpp" of api (layer 3)',
                      result.stdout)

    def test_a_sideways_include_fails(self):
        self.write("src/jobs/w.cpp", '#include "core/ids.hpp"\n#include "http/blocking_pool.hpp"\n')
        result = run(self.tmp)
        self.assertEqual(result.returncode, 1)
        self.assertIn("src/jobs/w.cpp:2: jobs (layer 2) may not include", result.stdout)
        self.assertNotIn("w.cpp:1:", result.stdout)

    def test_an_include_that_leaves_its_module_by_path_fails(self):
        self.write("src/http/x.cpp", '#include "../api/routes.hpp"\n')
        result = run(self.tmp)
        self.assertEqual(result.returncode, 1)
        self.assertIn("src/http/x.cpp:1:", result.stdout)

    def test_a_folder_outside_the_table_fails(self):
        self.write("src/cluster/node.cpp", '#include "core/ids.hpp"\n')
        result = run(self.tmp)
        self.assertEqual(result.returncode, 1)
        self.assertIn("src/cluster/node.cpp:1: folder src/cluster is not a module", result.stdout)

    def test_a_link_against_the_layers_fails(self):
        self.write("src/CMakeLists.txt",
                   "docflow_module(store\n  SOURCES store/s.cpp\n"
                   "  PRIVATE_DEPS docflow_core  # docflow_api in a comment is fine\n"
                   "               docflow_api)\n")
        result = run(self.tmp)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout.strip(),
                         "src/CMakeLists.txt:4: store (layer 1) may not link docflow_api; store uses core")

    def test_a_table_that_lets_a_module_use_its_own_layer_is_refused(self):
        path = self.tmp / "docs" / "architecture.md"
        text = path.read_text()
        row = "| 2 | `jobs` | `core`, `store`, `blob`, `pipeline`, `obs` |"
        self.assertIn(row, text)
        path.write_text(text.replace(row, "| 2 | `jobs` | `core`, `http` |"))
        result = run(self.tmp)
        self.assertEqual(result.returncode, 2)
        self.assertIn("jobs (layer 2) uses http (layer 2)", result.stderr)

    def test_a_missing_table_is_refused(self):
        (self.tmp / "docs" / "architecture.md").write_text("# Architecture\n")
        result = run(self.tmp)
        self.assertEqual(result.returncode, 2)
        self.assertIn("no table headed", result.stderr)


if __name__ == "__main__":
    unittest.main()
