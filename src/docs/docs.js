// The two tabs of /docs: "HTTP API" renders openapi.json with Swagger UI, "WebSocket"
// renders asyncapi.json with AsyncAPI React. The tab is the URL fragment (#http or
// #websocket) so either can be linked to; any other fragment is one of the renderers' own
// anchors and leaves the tab as it is. A renderer's bundle loads when its tab first opens:
// a reader of the HTTP API never pays for the 3 MB AsyncAPI one, and the reverse.
"use strict";

const renderers = {
  http(element) {
    return load("/docs/swagger-ui-bundle.js").then(() => {
      SwaggerUIBundle({
        url: "/openapi.json",
        domNode: element,
        // No badge image from validator.swagger.io (which would also learn the document's
        // URL): BaseLayout draws none, and this keeps it that way should the layout change.
        validatorUrl: null,
      });
    });
  },
  websocket(element) {
    return load("/docs/asyncapi-react.js").then(() => {
      AsyncApiStandalone.render(
        {
          // The parser fetches the document itself and wants an absolute URL.
          schema: { url: new URL("/asyncapi.json", location.href).href, requestOptions: {} },
          // Each message with a JSON example generated from its schema, open: what to send
          // is the first question about a protocol. The sidebar stays off (the default): it
          // is fixed to the viewport's top and would cover the page's header.
          config: { show: { messageExamples: true }, expand: { messageExamples: true } },
        },
        element,
      );
    });
  },
};

const opened = new Set();

function load(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

function show(tab) {
  for (const name of Object.keys(renderers)) {
    document.getElementById(`panel-${name}`).hidden = name !== tab;
    document.getElementById(`tab-${name}`).setAttribute("aria-selected", String(name === tab));
  }
  if (opened.has(tab)) return;
  opened.add(tab);
  const element = document.querySelector(`#panel-${tab} .renderer`);
  renderers[tab](element).catch((error) => {
    element.textContent = `The ${tab} document cannot be shown: ${error.message}.`;
  });
}

function tabOf(hash) {
  const name = hash.slice(1);
  return Object.hasOwn(renderers, name) ? name : null;
}

addEventListener("hashchange", () => {
  const tab = tabOf(location.hash);
  if (tab) show(tab);
});
show(tabOf(location.hash) ?? "http");
