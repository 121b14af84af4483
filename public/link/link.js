// The device-linking page: everything it does goes through /api/v1/link/{device}?token=…,
// so it never needs the app's API key.
(() => {
  const deviceId = location.pathname.split("/").filter(Boolean)[1] || "";
  const token = new URLSearchParams(location.search).get("token") || "";
  const api = (suffix) => `/api/v1/link/${encodeURIComponent(deviceId)}${suffix}?token=${encodeURIComponent(token)}`;
  const $ = (id) => document.getElementById(id);
  let shownQr = null;
  let stopped = false;

  const say = (text, kind) => {
    $("status").textContent = text;
    $("status").className = kind || "";
  };

  function render(device) {
    if (device.connected) {
      stopped = true;
      $("scan").hidden = $("pair").hidden = true;
      $("done").hidden = false;
      $("connected").textContent = `Connected as +${device.phone_number}`;
      say(`Connected as +${device.phone_number}`, "ok");
      return;
    }
    $("pair").hidden = false;
    if (device.pair_code) {
      $("code").textContent = device.pair_code;
      $("code-box").hidden = false;
    }
    if (device.has_qr && device.qr_code !== shownQr) {
      shownQr = device.qr_code;
      $("qr").src = `${api("/qr.svg")}&v=${Date.now()}`;
      $("qr").dataset.ref = device.qr_code;
    }
    $("scan").hidden = !device.has_qr;
    say(device.has_qr ? "Waiting for you to scan the code…" : "Preparing a code…");
  }

  async function poll() {
    if (stopped) return;
    try {
      const response = await fetch(api(""));
      const body = await response.json();
      if (!response.ok) {
        stopped = true;
        say(`${body.message || "This link does not work"}. Ask for a new link.`, "error");
        return;
      }
      render(body);
    } catch (e) {
      say("Cannot reach the server; retrying…", "error");
    }
    setTimeout(poll, 1500);
  }

  $("pair-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    say("Asking WhatsApp for a pairing code…");
    const response = await fetch(api("/pair-code"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ phone: $("phone").value.replace(/[^0-9]/g, "") }),
    });
    const body = await response.json();
    if (!response.ok) {
      const detail = body.errors ? Object.values(body.errors).flat().join(" ") : body.message;
      say(detail || "That did not work", "error");
      return;
    }
    render(body);
  });

  poll();
})();
