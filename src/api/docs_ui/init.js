// Starts Swagger UI on /docs. It is a file of its own, not a <script> block
// in the page, because the page's Content-Security-Policy forbids inline
// scripts.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  // BaseLayout has no top bar, so no URL box to load another document, and
  // no need for the standalone preset's extra 260 kB.
  layout: "BaseLayout",
  deepLinking: true,
  displayRequestDuration: true,
  // The default would send our document to validator.swagger.io for a badge:
  // the page talks to this server only (and the CSP allows nothing else).
  validatorUrl: null,
  // Tokens stay in memory, never in localStorage; a reload asks again.
  persistAuthorization: false,
});

// "Authorize" uses the document's OAuth2 password flow: Swagger UI posts
// grant_type=password with the username and password to its tokenUrl
// (/auth/login) and sends the access token it gets back as a bearer token.
// docflow has no OAuth2 clients or scopes: client id and secret stay empty.
window.ui.initOAuth({ appName: "docflow" });
