"""The text a fine-tuned model reads (text.format), per schema."""

from __future__ import annotations

import pandas as pd

from amzkit.text.format import model_texts


def test_2023_model_text_reads_html_as_text_like_the_2025_catalog() -> None:
    """amz23_dev: 254 of 1,716 rows fed the model '<p>', '<br>', '&amp;' (6,546 tags), tokens max_len then cut
    from the description; the 2025 catalog's descriptions were already cleaned."""
    frame = pd.DataFrame({
        "PRODUCT_ID": [1], "TITLE": ["Earrings &amp; Studs"], "BULLET_POINTS": ["[Gold,Silver]"],
        "DESCRIPTION": ["<p>Handcrafted &amp; light.</p><br>Size S: 25.2&quot;<ul><li>Gift box</li></ul>"],
        "PRODUCT_TYPE_ID": [7],
    })
    assert model_texts(frame, "amazon2023") == ['Earrings & Studs [Gold,Silver] Handcrafted & light. Size S: 25.2" '
                                                'Gift box']
