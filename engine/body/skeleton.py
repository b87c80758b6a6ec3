"""The SMPL 24-joint skeleton every body, motion and output here shares: joint names, parents, and
the joints the contact head watches. Rest pose: T-pose, y-up, facing +z, its left at +x."""

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = len(SMPL_JOINT_NAMES)
# The joints whose ground contact the model predicts (its contact head), in its output order.
CONTACT_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot", "left_wrist", "right_wrist")
# The foot joints (left ankle, right ankle, left foot, right foot): the first 4 contacts, as indices.
FOOT_JOINTS = tuple(SMPL_JOINT_NAMES.index(name) for name in CONTACT_JOINTS[:4])
