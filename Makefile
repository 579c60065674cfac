# Convenience targets; each runs dev.py, which needs only Python 3.11+ (no make required).
.PHONY: demo test bench serve lint

demo:
	python3 dev.py demo

test:
	python3 dev.py test

bench:
	python3 dev.py bench

serve:
	python3 dev.py serve

lint:
	python3 dev.py lint
