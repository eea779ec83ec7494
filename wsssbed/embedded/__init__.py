"""The embedded sample (`sample`): a small synthetic VOC-layout dataset with ground
truth, activation maps in every format and saliency maps, rendered on first use so that
every command runs on any machine without a download."""
