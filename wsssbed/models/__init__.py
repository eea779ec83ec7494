"""Foundation models (Segment Anything, CLIP, Grounding DINO) behind the generators:
loading users' checkpoints safely and running the models on one picture."""
