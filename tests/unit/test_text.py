from vistudio.text import plural


def test_plural_counts_and_forms() -> None:
    assert plural(1, "mistake") == "1 mistake"
    assert plural(0, "mistake") == "0 mistakes"
    assert plural(2, "extra copy") == "2 extra copies"
    assert plural(1200, "class") == "1,200 classes"
    assert plural(3, "day") == "3 days"
    assert plural(2, "person") == "2 people"
    assert plural(2, "datum", "data") == "2 data"
    assert plural(1.5, "second") == "1.5 seconds"
