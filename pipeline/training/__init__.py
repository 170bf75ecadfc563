"""What the GAN's stages need beside gan/: train's batches of real images (train_data), resuming
(resume), several processes (distributed), and the sampler generate and filter share."""
