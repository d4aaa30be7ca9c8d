"""GET /openapi.json and the Swagger UI at /docs (SPEC section 5), over real
sockets: the files come out of the binary byte for byte, with the right
content types, the security headers and working cache validators, without
authentication; unknown assets are 404 problems.

What a browser makes of the page (Authorize, Try it out, the CSP in force)
is tests/interop/docs_ui.test.mjs's job."""
import gzip
import html.parser
import json
import os
import unittest

from harness import SharedServerTestCase

REPO = os.environ.get("DOCFLOW_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SWAGGER_UI = os.path.join(REPO, "node_modules", "swagger-ui-dist")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# What each extension must be served as (the media type, parameters aside).
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".html": "text/html",
    ".json": "application/json",
}


class PageParser(html.parser.HTMLParser):
    """Collects what the page loads and any script it carries inline."""

    def __init__(self):
        super().__init__()
        self.references = []  # URLs of scripts, stylesheets and icons
        self.scripts = []  # (attrs, body) of every <script>
        self.handlers = []  # on* attributes: inline script by another name
        self._script = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [(tag, name) for name in attrs if name.startswith("on")]
        if tag == "script":
            self._script = (attrs, [])
            if attrs.get("src"):
                self.references.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.references.append(attrs["href"])

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None


def csp_directives(header):
    """{'script-src': ["'self'"], ...} from a Content-Security-Policy value."""
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def ext_of(path):
    if path == "/docs":
        return ".html"
    return os.path.splitext(path)[1]


class DocsTest(SharedServerTestCase):
    def page(self):
        res = self.server.get("/docs")
        self.assertEqual(res.status, 200, res)
        parser = PageParser()
        parser.feed(res.body.decode("utf-8"))
        return res, parser

    def assertSecurityHeaders(self, res):
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(res.header(name), value, "%s on %r" % (name, res))
        self.assertIsNotNone(res.header("Content-Security-Policy"), res)

    def test_openapi_document_is_openapi_3_1_json(self):
        res = self.server.get("/openapi.json")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json")
        doc = json.loads(res.body.decode("utf-8"))
        self.assertRegex(doc.get("openapi", ""), r"^3\.1\.\d+$")
        self.assertIn("paths", doc)
        self.assertSecurityHeaders(res)

    def test_openapi_document_is_the_committed_file(self):
        with open(os.path.join(REPO, "docs", "openapi.json"), "rb") as f:
            self.assertEqual(self.server.get("/openapi.json").body, f.read())

    def test_page_is_html_with_a_strict_policy(self):
        res, _ = self.page()
        self.assertEqual(res.content_type, "text/html")
        self.assertEqual((res.header("Content-Type") or "").replace(" ", "").lower(), "text/html;charset=utf-8")
        self.assertSecurityHeaders(res)
        csp = csp_directives(res.header("Content-Security-Policy"))
        self.assertEqual(csp.get("default-src"), ["'none'"], csp)
        self.assertEqual(csp.get("script-src"), ["'self'"], csp)
        self.assertEqual(csp.get("style-src"), ["'self'"], csp)
        self.assertEqual(csp.get("connect-src"), ["'self'"], csp)
        self.assertEqual(sorted(csp.get("img-src", [])), ["'self'", "data:"], csp)
        self.assertEqual(csp.get("frame-ancestors"), ["'none'"], csp)
        for sources in csp.values():
            for source in sources:
                self.assertNotIn(source, ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:"), csp)

    def test_page_has_no_inline_script(self):
        _, parser = self.page()
        self.assertTrue(parser.scripts, "the page loads no script")
        for attrs, body in parser.scripts:
            self.assertTrue(attrs.get("src"), "a <script> without src: %r" % (attrs,))
            self.assertEqual(body.strip(), "", "a <script src> with a body: %r" % body)
        self.assertEqual(parser.handlers, [], "inline event handlers")

    def test_page_loads_swagger_ui_and_our_initializer_from_this_server(self):
        _, parser = self.page()
        for ref in ("/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/init.js"):
            self.assertIn(ref, parser.references)
        for ref in parser.references:
            self.assertTrue(ref.startswith("/") and not ref.startswith("//"), "not from this server: " + ref)

    def test_initializer_points_at_the_contract(self):
        res = self.server.get("/docs/init.js")
        self.assertEqual(res.status, 200, res)
        self.assertIn(b'"/openapi.json"', res.body)

    def test_every_referenced_asset_is_served_with_its_type(self):
        _, parser = self.page()
        for ref in parser.references:
            with self.subTest(ref=ref):
                res = self.server.get(ref)
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.content_type, CONTENT_TYPES[ext_of(ref)], res)
                self.assertEqual(int(res.header("Content-Length")), len(res.body))
                self.assertTrue(res.body)
                self.assertSecurityHeaders(res)
                self.assertTrue(res.header("ETag", "").startswith('"'), res)
                self.assertEqual(res.header("Cache-Control"), "no-cache")

    def test_swagger_ui_files_are_embedded_byte_for_byte(self):
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
            with self.subTest(name=name), open(os.path.join(SWAGGER_UI, name), "rb") as f:
                self.assertEqual(self.server.get("/docs/" + name).body, f.read())

    def test_if_none_match_answers_304(self):
        for path in ("/docs", "/docs/swagger-ui-bundle.js", "/openapi.json"):
            with self.subTest(path=path):
                etag = self.server.get(path).header("ETag")
                for header in (etag, "W/" + etag, '"other", ' + etag, "*"):
                    res = self.server.get(path, headers={"If-None-Match": header})
                    self.assertEqual(res.status, 304, (header, res))
                    self.assertEqual(res.body, b"")
                    self.assertEqual(res.header("ETag"), etag)
                    self.assertEqual(res.header("Cache-Control"), "no-cache")
                res = self.server.get(path, headers={"If-None-Match": '"something-else"'})
                self.assertEqual(res.status, 200, res)

    def test_text_is_sent_gzip_compressed_when_accepted(self):
        for path in ("/docs", "/docs/init.js", "/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/openapi.json"):
            with self.subTest(path=path):
                plain = self.server.get(path)
                packed = self.server.get(path, headers={"Accept-Encoding": "br;q=1.0, gzip;q=0.8, *;q=0.1"})
                self.assertEqual(packed.status, 200, packed)
                self.assertEqual(packed.header("Content-Encoding"), "gzip")
                self.assertEqual(packed.header("Vary"), "Accept-Encoding")
                self.assertEqual(plain.header("Vary"), "Accept-Encoding")
                self.assertIsNone(plain.header("Content-Encoding"))
                self.assertEqual(gzip.decompress(packed.body), plain.body)
                self.assertEqual(packed.content_type, plain.content_type)
                self.assertNotEqual(packed.header("ETag"), plain.header("ETag"))
                res = self.server.get(path, headers={"Accept-Encoding": "gzip",
                                                     "If-None-Match": packed.header("ETag")})
                self.assertEqual(res.status, 304, res)
        bundle = self.server.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"})
        self.assertLess(len(bundle.body), int(self.server.get("/docs/swagger-ui-bundle.js").header("Content-Length")) / 2)

    def test_gzip_refused_or_not_offered_gives_identity(self):
        for header in ("identity", "gzip;q=0", "gzip; q=0.000, *", "br", "*;q=0", "deflate, *;q=0"):
            with self.subTest(header=header):
                res = self.server.get("/docs/init.js", headers={"Accept-Encoding": header})
                self.assertEqual(res.status, 200, res)
                self.assertIsNone(res.header("Content-Encoding"), header)
        for header in ("*", "x-gzip", "GZIP", "deflate, gzip;q=0.5"):
            with self.subTest(header=header):
                res = self.server.get("/docs/init.js", headers={"Accept-Encoding": header})
                self.assertEqual(res.header("Content-Encoding"), "gzip", header)

    def test_images_are_not_compressed_again(self):
        res = self.server.get("/docs/favicon-32x32.png", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(res.status, 200, res)
        self.assertIsNone(res.header("Content-Encoding"))
        self.assertIsNone(res.header("Vary"))

    def test_swagger_ui_licence_and_notice_are_served_beside_it(self):
        for name in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
            with self.subTest(name=name), open(os.path.join(SWAGGER_UI, name), "rb") as f:
                res = self.server.get("/docs/" + name)
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.content_type, "text/plain")
                self.assertEqual(res.body, f.read())
        self.assertIn(b"Apache License", self.server.get("/docs/LICENSE").body)

    def test_etag_differs_between_files(self):
        tags = {self.server.get(p).header("ETag") for p in ("/docs", "/docs/init.js", "/docs/swagger-ui.css")}
        self.assertEqual(len(tags), 3, tags)

    def test_head_gives_the_headers_without_the_body(self):
        get = self.server.get("/docs/swagger-ui-bundle.js")
        conn = self.connect(self.server)
        res = conn.request("HEAD", "/docs/swagger-ui-bundle.js")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.body, b"")
        self.assertEqual(res.header("Content-Length"), str(len(get.body)))
        self.assertEqual(res.header("ETag"), get.header("ETag"))
        self.assertEqual(res.content_type, "text/javascript")
        # The connection is still in step: the next response is whole.
        again = conn.request("GET", "/docs/init.js")
        self.assertEqual(again.status, 200, again)

    def test_unknown_asset_is_404_problem(self):
        for path in ("/docs/nope.js", "/docs/index.html", "/docs/swagger-ui.css.map", "/docs/", "/openapi.yaml"):
            with self.subTest(path=path):
                self.assertProblem(self.server.get(path), 404, None, instance=path)

    def test_head_of_unknown_asset_is_404_problem(self):
        conn = self.connect(self.server)
        res = conn.request("HEAD", "/docs/nope.js")
        self.assertEqual(res.status, 404, res)
        self.assertEqual(res.content_type, "application/problem+json")
        self.assertEqual(res.body, b"")

    def test_docs_need_no_authentication(self):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            for path in ("/docs", "/docs/init.js", "/openapi.json"):
                with self.subTest(path=path, headers=headers):
                    self.assertEqual(self.server.get(path, headers=headers).status, 200)

    def test_other_methods_are_405(self):
        res = self.server.request("POST", "/docs/init.js", body=b"")
        self.assertProblem(res, 405, None)
        self.assertEqual(res.header("Allow"), "GET, HEAD")

    def test_access_log_labels_assets_by_route_pattern(self):
        self.server.get("/docs/init.js", headers={"X-Request-ID": "docs-route-label"})
        line = self.server.wait_for_log(request_id="docs-route-label", event="http.request")
        self.assertEqual(line.get("route"), "/docs/{asset}", line)


if __name__ == "__main__":
    unittest.main()
