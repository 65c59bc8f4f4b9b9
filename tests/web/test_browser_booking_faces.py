"""Face entry on the phone (headless Chromium, 390 px, Chinese): the form offers a selfie per person; the
page's script scales a large phone photo down before sending it (so a party's photos stay under the
upload limit), and a photo without a face is answered at that person's field in Chinese, with what was
typed kept and no English left on the page."""

from __future__ import annotations

import io
import random
from datetime import datetime, time, timedelta

import pytest

from central.services import visitor_bookings as vb
from central.services.tickets import TicketTypeSpec, define_ticket_type
from tests.web.test_browser import server  # noqa: F401  (the live server fixture)
from tests.web.test_browser_booking import TZ, ZHANG, phone_browser
from tests.web.test_browser_i18n import chromium, english_left  # noqa: F401  (Chromium)

pytestmark = [pytest.mark.browser]


def big_photo(path) -> int:
    """A 4000x3000 phone-sized JPEG with no face in it (coloured tiles); returns its size in bytes."""
    from PIL import Image

    rng = random.Random(3)
    img = Image.new("RGB", (4000, 3000))
    tile = Image.new("RGB", (40, 40))
    for x in range(0, 4000, 40):
        for y in range(0, 3000, 40):
            tile.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (0, 0, 40, 40))
            img.paste(tile, (x, y))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    path.write_bytes(out.getvalue())
    return len(out.getvalue())


def test_a_large_photo_is_scaled_on_the_phone_and_a_faceless_one_is_said_in_chinese(server, chromium, tmp_path):  # noqa: F811
    pytest.importorskip("face_recognition")
    ctx, site = server.ctx, server.ctx.config.site
    day = datetime.now(TZ).date() + timedelta(days=1)
    with ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=0,
                           close_before_min=0, retention_days=30, face_entry=True)
        slot = vb.set_slot(db, site, "manager", day=day, start=time(9), end=time(11), capacity=20).id
    server.app.config["BOOKING_POW_BITS"] = 8
    photo = tmp_path / "selfie.jpg"
    size = big_photo(photo)
    context, page = phone_browser(chromium, "zh-CN")
    try:
        page.goto(f"{server.url}/book/slot/{slot}")
        page.fill('input[name="person-1-name"]', "张三")
        page.fill('input[name="person-1-doc_number"]', ZHANG)
        page.set_input_files('input[name="person-1-face"]', str(photo))
        # The script replaces the chosen file with a 1,024 px JPEG once it has drawn it.
        page.wait_for_function("() => document.querySelector('input[name=\"person-1-face\"]').files[0].name "
                               "=== 'face.jpg'")
        width, sent = page.evaluate("""async () => {
            const file = document.querySelector('input[name="person-1-face"]').files[0];
            return [(await createImageBitmap(file)).width, file.size]; }""")
        assert width == 1024 and sent * 2 < size
        # An upload limit between the two: the phone's own file would be refused as too large.
        server.app.config["MAX_PHOTO_BYTES"] = (sent + size) // 2
        page.fill('input[name="phone"]', "13800138000")
        page.check('input[name="consent"]')
        page.wait_for_selector('form[data-pow] button[type="submit"]:not([name]):enabled')
        with page.expect_navigation():
            page.locator('form[data-pow] button[type="submit"]:not([name])').click()
        assert "照片中没有找到人脸" in page.locator("#err-person-1-face").inner_text()
        assert page.input_value('input[name="person-1-name"]') == "张三"
        assert page.input_value('input[name="person-1-doc_number"]') == ZHANG
        assert english_left(page, ["张三", ZHANG]) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
