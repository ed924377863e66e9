"""The operators' console driven as a person drives it, in headless Chromium (Debian's
`chromium` and `chromedriver`, through Selenium): with the keyboard for every action.

Run by bff/tests/console_browser.rs, which prepares the sagas and passes their ids:

    python3 console_browser.py --url http://127.0.0.1:PORT --stuck ID --compensated ID \
        --steps reservar_presupuesto,reservar_influencers,abrir_tracking --shots DIR \
        [--dead-letter-saga ID]

Each check prints what it saw; the first that fails exits 1 with why. Screenshots go to DIR.
"""

import argparse
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def fail(why):
    print(f"FAIL: {why}", flush=True)
    sys.exit(1)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1100", "--lang=es"):
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def until(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.25)


def status_of(driver):
    badges = driver.find_elements(By.CSS_SELECTOR, "h1 .badge")
    return badges[0].text if badges else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--stuck", required=True)
    p.add_argument("--compensated", required=True)
    p.add_argument("--steps", required=True, help="the definition's steps, in order, comma separated")
    p.add_argument("--shots", required=True)
    p.add_argument("--dead-letter-saga")
    a = p.parse_args()
    os.makedirs(a.shots, exist_ok=True)
    steps = a.steps.split(",")
    d = browser()
    try:
        # 1. The saga list: counts per status, the stuck saga first, in its own section.
        d.get(f"{a.url}/console/sagas")
        if "Sagas" not in d.title:
            fail(f"the list's title is {d.title!r}")
        stuck_count = d.find_element(By.CSS_SELECTOR, '[data-count="stuck"]').text
        if not stuck_count.endswith("1"):
            fail(f"the stuck count reads {stuck_count!r}")
        first = d.find_elements(By.CSS_SELECTOR, "#atascadas + table tbody tr")
        if not first or first[0].get_attribute("data-saga") != a.stuck:
            fail("the stuck saga is not first, under 'Atascadas'")
        d.save_screenshot(os.path.join(a.shots, "sagas.png"))
        print("saga list: stuck saga first, counts shown")

        # 2. The compensated saga, reached with the keyboard: its timeline shows the
        # compensations in the reverse order of the steps.
        link = d.find_element(By.CSS_SELECTOR, f'a[href="/console/sagas/{a.compensated}"]')
        link.send_keys(Keys.ENTER)
        until("the compensated saga's page", lambda: a.compensated in d.current_url)
        if status_of(d) != "compensated":
            fail(f"the saga reads {status_of(d)!r}")
        bars = d.find_elements(By.CSS_SELECTOR, "svg.timeline g.bar.compensation")
        if len(bars) < 2:
            fail(f"{len(bars)} compensation bars; expected at least 2")
        ran = sorted(bars, key=lambda b: float(b.get_attribute("data-start-ms")))
        order = [b.get_attribute("data-step") for b in ran]
        positions = [steps.index(s) for s in order]
        if positions != sorted(positions, reverse=True):
            fail(f"compensations ran {order}: not the reverse of {steps}")
        xs = [float(b.find_element(By.TAG_NAME, "rect").get_attribute("x")) for b in ran]
        if xs != sorted(xs):
            fail(f"compensation bars are not left to right in time: {xs}")
        actions = d.find_elements(By.CSS_SELECTOR, "svg.timeline g.bar.action")
        if not actions:
            fail("no action bars")
        if not d.find_elements(By.CSS_SELECTOR, "svg.timeline g.mark.compensation_started"):
            fail("the turn to compensation is not marked")
        d.find_element(By.TAG_NAME, "figure").screenshot(os.path.join(a.shots, "timeline.png"))
        d.save_screenshot(os.path.join(a.shots, "saga-compensated.png"))
        print(f"compensated saga: compensations {order}, drawn left to right")

        # 3. The stuck saga: retried with a note typed and submitted from the keyboard; it
        # finishes, and the log keeps the note.
        d.get(f"{a.url}/console/sagas/{a.stuck}")
        if status_of(d) != "stuck":
            fail(f"the stuck saga reads {status_of(d)!r}")
        note = d.find_element(By.CSS_SELECTOR, f'form[action="/console/sagas/{a.stuck}/retry"] input[name="nota"]')
        note.send_keys("marca reparada desde la consola" + Keys.ENTER)
        until("the notice of the retry", lambda: d.find_elements(By.CSS_SELECTOR, "p.notice[role=status]"))

        def finished():
            d.refresh()
            return status_of(d) == "compensated"

        until("the retried saga compensated", finished)
        log = d.find_element(By.TAG_NAME, "body").text
        if "operator_retried" not in log or "marca reparada desde la consola" not in log:
            fail("the log does not show the operator's retry and its note")
        d.save_screenshot(os.path.join(a.shots, "saga-retried.png"))
        print("stuck saga: retried from the keyboard, compensated, note in the log")

        # 4. A dead letter of a saga: listed on the saga and on the dead letters page,
        # redriven with a note; the page then shows it redriven.
        if a.dead_letter_saga:
            d.get(f"{a.url}/console/sagas/{a.dead_letter_saga}")
            rows = d.find_elements(By.CSS_SELECTOR, "tr[data-dead-letter]")
            if not rows:
                fail("the saga lists no dead letter")
            dl = rows[0].get_attribute("data-dead-letter")
            d.get(f"{a.url}/console/dead-letters")
            row = d.find_element(By.CSS_SELECTOR, f'tr[data-dead-letter="{dl}"]')
            if row.get_attribute("data-estado") != "pending":
                fail(f"the dead letter reads {row.get_attribute('data-estado')!r}, not pending")
            d.save_screenshot(os.path.join(a.shots, "dead-letters.png"))
            row.find_element(By.CSS_SELECTOR, 'input[name="nota"]').send_keys("causa corregida" + Keys.ENTER)
            until("the notice of the redrive", lambda: d.find_elements(By.CSS_SELECTOR, "p.notice[role=status]"))
            row = d.find_element(By.CSS_SELECTOR, f'tr[data-dead-letter="{dl}"]')
            if row.get_attribute("data-estado") != "redriven":
                fail(f"after the redrive the dead letter reads {row.get_attribute('data-estado')!r}")
            d.save_screenshot(os.path.join(a.shots, "dead-letter-redriven.png"))
            print(f"dead letter {dl}: listed with its saga, redriven from the keyboard")
    finally:
        d.quit()
    print("console: every check passed")


if __name__ == "__main__":
    main()
