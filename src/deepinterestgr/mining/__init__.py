"""Deep interest mining: captions, intent descriptors and user interests from LLMs/VLMs, judged for quality."""
