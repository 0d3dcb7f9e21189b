// Swagger UI's OAuth 2.0 redirect page, as a script file (no inline script): hands the
// authorization response to the Swagger UI window that opened this pop-up, then closes.
// Adapted from swagger-ui-dist's oauth2-redirect.html (Apache-2.0); the parameters are
// read with URLSearchParams instead of being pasted into a JSON string.
(function () {
  "use strict";

  function parameters() {
    var raw = /code|token|error/.test(window.location.hash)
      ? window.location.hash.substring(1).replace("?", "&")
      : window.location.search.substring(1);
    var result = {};
    new URLSearchParams(raw).forEach(function (value, key) {
      result[key] = value;
    });
    return result;
  }

  function run() {
    var oauth2 = window.opener && window.opener.swaggerUIRedirectOauth2;
    if (!oauth2) {
      document.body.textContent = "This page completes a login started from Swagger UI.";
      return;
    }
    var sentState = oauth2.state;
    var redirectUrl = oauth2.redirectUrl;
    var qp = parameters();
    var isValid = qp.state === sentState;
    var flow = oauth2.auth.schema.get("flow");

    if ((flow === "accessCode" || flow === "authorizationCode" || flow === "authorization_code")
        && !oauth2.auth.code) {
      if (!isValid) {
        oauth2.errCb({
          authId: oauth2.auth.name,
          source: "auth",
          level: "warning",
          message: "Authorization may be unsafe, passed state was changed in server. "
            + "The passed state wasn't returned from auth server."
        });
      }
      if (qp.code) {
        delete oauth2.state;
        oauth2.auth.code = qp.code;
        oauth2.callback({auth: oauth2.auth, redirectUrl: redirectUrl});
      } else {
        var message = "[Authorization failed]: no accessCode received from the server.";
        if (qp.error) {
          message = "[" + qp.error + "]: "
            + (qp.error_description ? qp.error_description + ". "
              : "no accessCode received from the server. ")
            + (qp.error_uri ? "More info: " + qp.error_uri : "");
        }
        oauth2.errCb({authId: oauth2.auth.name, source: "auth", level: "error", message: message});
      }
    } else {
      oauth2.callback({auth: oauth2.auth, token: qp, isValid: isValid, redirectUrl: redirectUrl});
    }
    window.close();
  }

  if (document.readyState !== "loading") {
    run();
  } else {
    document.addEventListener("DOMContentLoaded", run);
  }
})();
