"""Unit-to-speech vocoders: HiFi-GAN and iSTFT generators, discriminators, conditioning front ends, duration prediction."""
