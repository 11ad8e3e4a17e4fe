"""The explorer page in a real headless browser (Debian's chromium + chromedriver, driven by Selenium):
open the page with its access token (the server swaps it for a cookie), drag a slider, check the decoded
image changed, hover for a traversal strip, draw from the prior, encode a test image, and no console
errors. Skips with the reason where the browser is missing.

Also the script that made the README's screenshot:
    python tests/explore/test_browser.py SOURCE OUT.png [explore options...]
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from jointvae_fast.explore import build_explorer
from jointvae_fast.model import JointVAE
from jointvae_fast.store import checkpoint
from tests.explore.servers import serving

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,820"]
WAIT_S = 60
TOKEN = "browser-test-token-0123"


def chromium_driver():
    """A headless Chromium WebDriver (Debian's chromium + chromedriver), or the reason there is none."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[test]')"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return None, "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver)), None


def wait_for(driver, condition, what):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message=f"timed out waiting for {what}")


def image_src(driver, element_id):
    return driver.execute_script(f"return document.getElementById('{element_id}').getAttribute('src') || ''")


def decode_in_page(driver):
    """The data URL api/decode gives for the latent the controls show now (fetched by the page itself)."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const z = [];
        document.querySelectorAll(".unit input").forEach((i) => { z[Number(i.id.slice(8))] = Number(i.value); });
        const c = [...document.querySelectorAll(".disc")].map((row) =>
            [...row.querySelectorAll("button")].findIndex((b) => b.getAttribute("aria-pressed") === "true"));
        fetch("api/decode", {method: "POST", body: JSON.stringify({z, c})}).then((r) => r.blob()).then((b) => {
            const f = new FileReader(); f.onload = () => done(f.result); f.readAsDataURL(b); });
    """)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    d, reason = chromium_driver()
    if d is None:
        pytest.skip(reason)
    torch.manual_seed(0)
    model = JointVAE((1, 32, 32), 3, [3])
    with torch.no_grad():  # z0, z1 informative; z2 carries nothing (mu = 0, logvar = 0: KL = 0) -> folded away
        model.to_posterior.bias[:2] += torch.tensor([2.0, 1.0])
        for row in (2, 3 + 2):
            model.to_posterior.weight[row] = 0.0
            model.to_posterior.bias[row] = 0.0
    path = tmp_path_factory.mktemp("browser") / "tiny.pt"
    checkpoint.save(path, model, meta={"dataset": "tinyset"})
    g = torch.Generator().manual_seed(1)
    ds = SimpleNamespace(name="tinyset", test=torch.randint(0, 256, (12, 1, 32, 32), dtype=torch.uint8, generator=g))
    with serving(build_explorer(str(path), dataset=ds), token=TOKEN) as server:
        try:
            d.get(server.url)  # .../?token=TOKEN
            yield SimpleNamespace(driver=d, server=server)
        finally:
            d.quit()


def test_page_in_a_headless_browser(page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = page.driver
    assert d.current_url == page.server.url.split("?")[0]  # the token left the address bar for a cookie
    first = wait_for(d, lambda d: image_src(d, "decoded").startswith("data:image/png") and image_src(d, "decoded"),
                     "the first decoded image")
    rows = d.find_elements(By.CSS_SELECTOR, "#units .unit")
    assert [r.get_attribute("data-latent") for r in rows] == ["z0", "z1"]  # active units, highest KL first
    assert "1 inactive unit" in d.find_element(By.ID, "inactive-summary").get_attribute("textContent")
    assert "test split of tinyset" in d.find_element(By.ID, "kl-source").text

    slider = rows[0].find_element(By.TAG_NAME, "input")
    ActionChains(d).move_to_element_with_offset(slider, 100, 0).click().perform()  # (headless drags do not move it)
    moved = wait_for(d, lambda d: image_src(d, "decoded") not in (first, "") and image_src(d, "decoded"),
                     "the image to change after moving the slider")
    assert float(rows[0].find_element(By.TAG_NAME, "output").text) != 0.0
    slider.send_keys(Keys.ARROW_RIGHT * 40)  # 40 input events in a burst: the last latent must be what is shown
    wait_for(d, lambda d: image_src(d, "decoded") == decode_in_page(d), "the image of the final slider position")
    assert float(slider.get_attribute("value")) == pytest.approx(float(rows[0].find_element(By.TAG_NAME, "output").text))
    wait_for(d, lambda d: image_src(d, "strip").startswith("data:image/png"), "the traversal strip of z0")
    assert "z0 from the prior" in d.find_element(By.ID, "strip-caption").text

    d.find_element(By.ID, "prior").click()
    wait_for(d, lambda d: image_src(d, "decoded") not in (moved, ""), "a prior draw")
    d.find_element(By.ID, "test-index").clear()
    d.find_element(By.ID, "test-index").send_keys("3")
    d.find_element(By.ID, "encode").click()
    wait_for(d, lambda d: image_src(d, "reconstruction").startswith("data:image/png"), "the encoded test image")
    assert d.find_element(By.ID, "original-caption").text == "test image #3"
    assert d.find_element(By.ID, "status").text == ""

    shot = tmp_path / "explorer.png"
    d.save_screenshot(str(shot))
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    shutil.copy(shot, reports / "explorer_browser_test.png")  # the test artifact (reports/ is not committed)
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    without_cookie = d.execute_async_script("""const done = arguments[arguments.length - 1];
        fetch("api/model", {credentials: "omit"}).then((r) => done(r.status));""")
    assert without_cookie == 403  # the cookie is what let the page in


def screenshot(argv):
    """Serve SOURCE (a path relative to the current folder shows as such) with the explorer CLI, encode a test
    image if there are any, move the top unit's slider, save a screenshot."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    source, out, extra = argv[0], Path(argv[1]), argv[2:]
    p = subprocess.Popen([sys.executable, "-m", "jointvae_fast.explore", source, "--no-browser", *extra],
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    d, reason = chromium_driver()
    if d is None:
        raise SystemExit(reason)
    try:
        url = p.stdout.readline().split(" at ", 1)[1].split()[0]
        d.get(url)
        wait_for(d, lambda d: image_src(d, "decoded").startswith("data:"), "the first image")
        if d.find_element(By.ID, "encode").is_enabled():
            d.find_element(By.ID, "encode").click()
            wait_for(d, lambda d: image_src(d, "reconstruction").startswith("data:"), "the encoded image")
        top = d.find_elements(By.CSS_SELECTOR, "#units .unit input")[0]
        ActionChains(d).move_to_element_with_offset(top, 60, 0).click().perform()
        wait_for(d, lambda d: image_src(d, "strip").startswith("data:"), "the strip")
        d.save_screenshot(str(out))
    finally:
        d.quit()
        p.terminate()
        p.wait(30)


if __name__ == "__main__":
    screenshot(sys.argv[1:])
