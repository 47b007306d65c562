"""Training DDGAN: everything train_ddgan.py runs below its flags.

``preflight`` checks a run before its processes start and locks its folder; ``trainer`` is the loop
of each process (build, iterate, end each epoch with its files) and ``loss`` its GAN phases;
``data`` gives each process its share of the data; ``content`` reads and writes content.pth;
``run_folder`` says where a run lives, what --resume takes from it and which files each epoch
owes; ``evaluation`` scores the generator while it trains (metrics.jsonl, netG_best.pth);
``flags`` are the training-only flags and the table of what --resume does with each.
"""
