"""Apps of the FastFlyer bench project (see ``bench/web_flyer.py``)."""
