// Starts Swagger UI with the settings the page carries as JSON (in a non-executed
// <script type="application/json">), so the page needs no inline script and can be
// served with a Content-Security-Policy of script-src 'self'.
(function () {
  "use strict";
  var element = document.getElementById("authbridge-swagger-ui-config");
  var config = JSON.parse(element.textContent);
  var options = config.options;
  options.oauth2RedirectUrl = window.location.origin + config.oauth2RedirectPath;
  options.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  var ui = SwaggerUIBundle(options);
  if (config.initOAuth) {
    ui.initOAuth(config.initOAuth);
  }
  window.ui = ui;
})();
