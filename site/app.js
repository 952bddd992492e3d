// Browse time: the page calls the relay, never the API itself. The relay adds
// the token server-side; this code has nothing secret to leak.

const form = /** @type {HTMLFormElement} */ (document.getElementById("search-form"));
const phrase = /** @type {HTMLInputElement} */ (document.getElementById("phrase"));
const status = /** @type {HTMLElement} */ (document.getElementById("status"));
const results = /** @type {HTMLUListElement} */ (document.getElementById("results"));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  status.textContent = "Searching…";
  results.replaceChildren();
  const url = `/api/relay/getty/search/images?phrase=${encodeURIComponent(phrase.value)}`;
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) {
      status.textContent = `Error ${response.status}: ${body.error?.message ?? "unexpected answer"}`;
      return;
    }
    const images = body.images ?? [];
    status.textContent = `${images.length} photos for “${phrase.value}”`;
    for (const image of images) {
      const item = document.createElement("li");
      item.textContent = image.title;
      results.append(item);
    }
  } catch (err) {
    status.textContent = `The relay could not be reached: ${err}`;
  }
});
