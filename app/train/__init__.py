"""Training a drafter from inside the app: the Train page (page.py) and one card per
training run with its live plot (job_card.py). The runs themselves are engine
training jobs (engine/mtp_train/job.py) in their own processes."""
